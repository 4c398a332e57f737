/**
 * `mesh-harness check`, network area, against real failures inside a network namespace:
 * NXDOMAIN from the namespace's own DNS server, a refused port, no route, a port held by a
 * foreign process; and every remote black-holed, where check must still end in its bound.
 */
import t from 'tap';
import { execa } from 'execa';
import { createServer as createUnixServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { asAccount } from '../../src/util/run-as.ts';
import { DESTINATION, failures, healthyWorld, runCheck } from '../helpers/check-world.ts';
import { setNetnsResolvConf } from '../helpers/dns.ts';
import { createNetns, linkNetns, startListeners, startScriptIn } from '../helpers/netns.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

t.test('unresolvable name: the namespace DNS server answers NXDOMAIN', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'nxdomain');
  const run = await runCheck(world, { proxy: { destinationAddr: 'nosuch.mh-check.test:8086' } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['network.dns(nosuch.mh-check.test)']);
  t.match(run.find('network.dns', 'nosuch.mh-check.test'), { message: 'nosuch.mh-check.test does not resolve: neither /etc/hosts nor DNS knows it', hint: /dnsmasq step .* \/etc\/hosts entry, or put an IP address in proxy\.destinationAddr/ });
  t.match(run.find('network.tcp', 'nosuch.mh-check.test:8086'), { result: 'skipped', message: /does not resolve/ });
  t.match(run.find('network.route', 'nosuch.mh-check.test'), { result: 'skipped' });
});

t.test('unreachable port: nothing listens on the destination port', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'refused');
  const run = await runCheck(world, { proxy: { destinationAddr: `${DESTINATION}:8087` } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), [`network.tcp(${DESTINATION}:8087)`]);
  t.match(run.find('network.tcp', `${DESTINATION}:8087`), { message: '127.0.0.1:8087 refused the connection: nothing listens there', hint: /check firewalls and routes, the port in proxy\.destinationAddr/ });
});

t.test('no route to the pod network: an address outside every route of the namespace', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'noroute');
  const run = await runCheck(world, { proxy: { destinationAddr: '203.0.113.7:8086' } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['network.tcp(203.0.113.7:8086)', 'network.route(203.0.113.7)']);
  t.match(run.find('network.route', '203.0.113.7'), { message: /^no route to 203\.0\.113\.7: .*unreachable/i, hint: /ip route add <pod CIDR> via <gateway>/ });
  t.match(run.find('network.tcp', '203.0.113.7:8086').message, /203\.0\.113\.7:8086 is unreachable \(ENETUNREACH\)/);
});

t.test('port in use by a foreign process; a port held by the proxy user is ours', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'ports');
  await startListeners(t, world.ns, [{ port: 4143, reply: 'squatter' }]);
  const meshproxy = { uid: Number((await execa('id', ['-u', 'meshproxy'])).stdout), gid: Number((await execa('id', ['-g', 'meshproxy'])).stdout) };
  // A proxy left running as meshproxy on its admin port: the harness's own.
  const listenOnAdminPort = "require('node:net').createServer().listen(4191, '127.0.0.1', () => console.log('ready'))";
  await startScriptIn(t, world.ns, 'proxy-like listener', listenOnAdminPort, [], asAccount(meshproxy));

  const run = await runCheck(world);
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['network.port(4143)']);
  t.match(run.find('network.port', '4143'), { message: /^in use on \[::\]:4143 by node \(pid \d+\), uid 0$/, hint: "stop that process (ss -ltnp 'sport = :4143' shows it), or move proxy.inboundPort to a free port" });
  t.match(run.find('network.port', '4191'), { result: 'success', message: /^held on 127\.0\.0\.1:4191 by node \(pid \d+\), running as the proxy user meshproxy$/ });
});

t.test('every remote black-holed: check still ends within its bound, each check saying what timed out', { skip: SKIP_WITHOUT_SETUP, timeout: 120_000 }, async (t) => {
  const world = await healthyWorld(t, 'blackhole');
  // Everything off-host vanishes: the default route leads into a namespace that does not
  // forward and has none of the addresses, so it drops every packet without a word.
  const sink = await createNetns(t, 'chk-sink');
  await linkNetns(world.ns, sink, { a: ['10.254.0.1/24'], b: ['10.254.0.2/24'] });
  await world.ns.exec(['ip', 'route', 'add', 'default', 'via', '10.254.0.2']);
  // A resolver that never answers, which glibc would wait on for 30 s x 5 attempts.
  setNetnsResolvConf(t, world.ns, 'nameserver 198.51.100.53\noptions timeout:30 attempts:5\n');
  // A Workload API socket that accepts and never answers.
  const silentSocket = join(world.dir, 'silent.sock');
  const held: Socket[] = [];
  const silent = createUnixServer((socket) => held.push(socket)).listen(silentSocket);
  t.teardown(() => {
    for (const s of held) s.destroy();
    silent.close();
  });
  // An admin port that accepts and never answers, inside the namespace.
  const adminPort = 14192;
  await startScriptIn(t, world.ns, 'silent admin port', `require('node:net').createServer(() => {}).listen(${adminPort}, '127.0.0.1', () => console.log('ready'))`);

  // Unbounded, these would take minutes (TCP SYN retries ~2 min, the resolver 150 s, the gRPC call forever).
  const run = await runCheck(
    world,
    {
      identity: { workloadApiSocket: `unix://${silentSocket}` },
      proxy: { destinationAddr: '198.51.100.7:8086', policyAddr: 'policy.mh-check.test:8090' },
      control: { registrarAddress: 'registrar.mh-check.test:8443' },
      admin: { port: adminPort },
    },
    { timeoutMs: 30_000, bound: false },
  );
  t.notOk(run.exitCode === undefined, 'check ended by itself, well before the 30 s kill');
  t.comment(`checks took ${run.report.durationMs} ms against the documented bound of 5000 ms`);
  t.equal(run.exitCode, 1);
  t.match(run.find('identity.svid').message, /sent no SVID within 3000 ms|did not finish within/);
  t.match(run.find('network.tcp', '198.51.100.7:8086').message, '198.51.100.7:8086 did not answer within 2 s: packets are dropped on the way');
  t.match(run.find('network.dns', 'policy.mh-check.test').message, /resolving policy\.mh-check\.test got no answer within 2 s|did not finish within/);
  t.match(run.find('network.dns', 'registrar.mh-check.test').message, /got no answer|did not finish within/);
  // Under load the check's own 1.5 s answer timeout and its 2 s outer deadline race; either way it must say it timed out.
  const status = run.find('daemon.status');
  t.not(status.result, 'pass', 'a silent admin port is not a running daemon');
  t.match(status.message, /127\.0\.0\.1:14192 did not give mesh-harness status: no answer from 127\.0\.0\.1:14192 within 1500 ms|did not finish within/);
});
