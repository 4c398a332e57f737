/**
 * `mesh-harness check` against real failures: the built CLI runs inside a network
 * namespace the test creates, with its own resolv.conf and DNS server, a development
 * Workload API serving real SVIDs, and real listeners; each test breaks one thing and
 * expects that check's own message and hint.
 */
import t from 'tap';
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import { createServer as createUnixServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { DevCa } from '../../src/dev/ca.ts';
import { runCli } from '../helpers/cli.ts';
import { DESTINATION, failures, healthyWorld, runCheck, SPIFFE_ID, TRUST_DOMAIN } from '../helpers/check-world.ts';
import { setNetnsResolvConf } from '../helpers/dns.ts';
import { createNetns, linkNetns, startListeners, startScriptIn } from '../helpers/netns.ts';

t.test('a healthy machine passes every check; the JSON report has the documented shape', async (t) => {
  const world = await healthyWorld(t, 'ok');
  const run = await runCheck(world);
  t.same(failures(run), [], run.stdout);
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(run.report.success, true);
  t.same(run.report.categories.map((c) => c.categoryName), ['config', 'host', 'binaries', 'identity', 'network', 'control plane', 'daemon']);
  for (const entry of run.report.categories.flatMap((c) => c.checks)) {
    t.match(entry, { id: /^[a-z-]+\.[a-z-]+$/, description: String, result: /^(success|warning|error|skipped)$/, message: String, durationMs: Number }, entry.id);
  }
  const summary = run.report.summary;
  t.equal(summary.ok + summary.warn + summary.fail + summary.skip, run.report.categories.flatMap((c) => c.checks).length);
  t.match(run.find('identity.svid').message, /^serial [0-9A-F]+ from /);
  t.equal(run.find('identity.chain').result, 'success');
  t.match(run.find('identity.expiry').message, /^expires in \d+m/);
  t.equal(run.find('network.dns', DESTINATION).message, '127.0.0.1');
  t.match(run.find('network.tcp', `${DESTINATION}:8086`).message, 'connected to 127.0.0.1:8086');
  t.match(run.find('network.route', DESTINATION).message, /^127\.0\.0\.1 via on-link dev lo/);
  t.equal(run.find('network.port', '4143').message, 'free');
  t.match(run.find('binaries.proxy').message, /linkerd2-proxy \(runs; linkerd2-proxy reports no version\)$/);
  t.match(run.find('control.registrar'), { result: 'skipped', message: /^registration not configured \(control\.registrarAddress is empty\)/ });
  t.match(run.find('daemon.status'), { result: 'skipped', message: /no harness answers on 127\.0\.0\.1:4192/ });
});

t.test('the table output: one line per check under area headings, hint and runbook under a failure', async (t) => {
  const world = await healthyWorld(t, 'table');
  const run = await runCheck(world, { identity: { workloadApiSocket: `unix://${world.dir}/absent.sock` } }, { output: 'table' });
  t.equal(run.exitCode, 1);
  t.match(run.stdout, /^config\n------\n\[ok\] {3}the configuration is valid: /);
  t.match(run.stdout, /\nidentity\n--------\n/);
  t.match(run.stdout, /\[FAIL\] the Workload API \(identity\.workloadApiSocket\) serves an SVID for spiffe:\/\/root\.linkerd\.cluster\.local\/vm\/web\n {9}Workload API socket .*absent\.sock does not exist; is spire-agent running\?.*\n {9}hint: start spire-agent.*\n {9}see docs\/operations\.md#check-identity-svid\n/);
  t.match(run.stdout, /\[skip\] the SVID chain verifies against the trust anchors \(skipped: no SVID for /);
  t.match(run.stdout, /\nStatus check results are \[FAIL\] \(\d+ passed, 1 failed, 0 warnings, \d+ skipped; [\d.]+ s\)$/);
});

t.test('an unknown --output is a usage error (64) that runs no check', async (t) => {
  const res = await runCli(['check', '--output', 'yaml']);
  t.equal(res.exitCode, 64);
  t.match(res.stderr, 'mesh-harness check: --output must be table or json, got "yaml"\nusage: mesh-harness check');
  t.equal(res.stdout, '');
});

t.test('socket absent', async (t) => {
  const world = await healthyWorld(t, 'nosock');
  const run = await runCheck(world, { identity: { workloadApiSocket: `unix://${world.dir}/absent.sock` } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['identity.svid']);
  const svid = run.find('identity.svid');
  t.match(svid.message, `Workload API socket ${world.dir}/absent.sock does not exist; is spire-agent running?`);
  t.match(svid.hint, /^start spire-agent \(systemctl status spire-agent, or spire\.mode managed\), or set identity\.workloadApiSocket/);
  t.equal(svid.runbook, 'docs/operations.md#check-identity-svid');
  for (const id of ['identity.chain', 'identity.expiry', 'identity.clock']) t.equal(run.find(id).result, 'skipped', id);
});

t.test('the Workload API serves another ID', async (t) => {
  const world = await healthyWorld(t, 'otherid');
  const run = await runCheck(world, { identity: { spiffeId: `spiffe://${TRUST_DOMAIN}/vm/db` } });
  t.same(failures(run), ['identity.svid']);
  t.match(run.find('identity.svid'), { message: `serves ${SPIFFE_ID} but not spiffe://${TRUST_DOMAIN}/vm/db`, hint: /registration entry .* must have -spiffeID spiffe:\/\/root\.linkerd\.cluster\.local\/vm\/db/ });
});

t.test('wrong trust anchor: the dev CA signs, the anchors file holds another CA', async (t) => {
  const world = await healthyWorld(t, 'anchor');
  const other = await DevCa.create({ trustDomain: TRUST_DOMAIN, commonName: 'some other root' });
  const otherAnchors = join(world.dir, 'other-anchors.pem');
  writeFileSync(otherAnchors, other.bundlePem);
  const run = await runCheck(world, { identity: { trustAnchorsFile: otherAnchors } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['identity.chain']);
  const chain = run.find('identity.chain');
  t.match(chain.message, `does not verify against any trust anchor in ${otherAnchors}`);
  t.match(chain.message, 'trust anchors: CN=some other root');
  t.match(chain.hint, /holds the wrong anchor .* UpstreamAuthority/);
  t.equal(run.find('identity.trust-anchors').result, 'success');
});

t.test('trust anchors file missing', async (t) => {
  const world = await healthyWorld(t, 'noanchor');
  const run = await runCheck(world, { identity: { trustAnchorsFile: `${world.dir}/nope.pem` } });
  t.same(failures(run), ['identity.trust-anchors']);
  t.match(run.find('identity.trust-anchors'), { message: `trust anchors file ${world.dir}/nope.pem does not exist`, hint: /write the Linkerd trust anchor/ });
  t.match(run.find('identity.chain'), { result: 'skipped', message: /no usable trust anchors/ });
});

t.test('unresolvable name: the namespace DNS server answers NXDOMAIN', async (t) => {
  const world = await healthyWorld(t, 'nxdomain');
  const run = await runCheck(world, { proxy: { destinationAddr: 'nosuch.mh-check.test:8086' } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['network.dns(nosuch.mh-check.test)']);
  t.match(run.find('network.dns', 'nosuch.mh-check.test'), { message: 'nosuch.mh-check.test does not resolve: neither /etc/hosts nor DNS knows it', hint: /dnsmasq step .* \/etc\/hosts entry, or put an IP address in proxy\.destinationAddr/ });
  t.match(run.find('network.tcp', 'nosuch.mh-check.test:8086'), { result: 'skipped', message: /does not resolve/ });
  t.match(run.find('network.route', 'nosuch.mh-check.test'), { result: 'skipped' });
});

t.test('unreachable port: nothing listens on the destination port', async (t) => {
  const world = await healthyWorld(t, 'refused');
  const run = await runCheck(world, { proxy: { destinationAddr: `${DESTINATION}:8087` } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), [`network.tcp(${DESTINATION}:8087)`]);
  t.match(run.find('network.tcp', `${DESTINATION}:8087`), { message: '127.0.0.1:8087 refused the connection: nothing listens there', hint: /check firewalls and routes, the port in proxy\.destinationAddr/ });
});

t.test('no route to the pod network: an address outside every route of the namespace', async (t) => {
  const world = await healthyWorld(t, 'noroute');
  const run = await runCheck(world, { proxy: { destinationAddr: '203.0.113.7:8086' } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['network.tcp(203.0.113.7:8086)', 'network.route(203.0.113.7)']);
  t.match(run.find('network.route', '203.0.113.7'), { message: /^no route to 203\.0\.113\.7: .*unreachable/i, hint: /ip route add <pod CIDR> via <gateway>/ });
  t.match(run.find('network.tcp', '203.0.113.7:8086').message, /203\.0\.113\.7:8086 is unreachable \(ENETUNREACH\)/);
});

t.test('port in use by a foreign process; a port held by the proxy user is ours', async (t) => {
  const world = await healthyWorld(t, 'ports');
  await startListeners(t, world.ns, [{ port: 4143, reply: 'squatter' }]);
  const meshproxy = (await execa('id', ['-u', 'meshproxy'])).stdout.trim();
  const meshproxyGid = (await execa('id', ['-g', 'meshproxy'])).stdout.trim();
  // A proxy left running as meshproxy on its admin port: the harness's own.
  const listenOnAdminPort = "require('node:net').createServer().listen(4191, '127.0.0.1', () => console.log('ready'))";
  await startScriptIn(t, world.ns, 'proxy-like listener', listenOnAdminPort, [], ['setpriv', `--reuid=${meshproxy}`, `--regid=${meshproxyGid}`, '--clear-groups']);

  const run = await runCheck(world);
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['network.port(4143)']);
  t.match(run.find('network.port', '4143'), { message: /^in use on \[::\]:4143 by node \(pid \d+\), uid 0$/, hint: "stop that process (ss -ltnp 'sport = :4143' shows it), or move proxy.inboundPort to a free port" });
  t.match(run.find('network.port', '4191'), { result: 'success', message: /^held on 127\.0\.0\.1:4191 by node \(pid \d+\), running as the proxy user meshproxy$/ });
});

t.test('missing capability: the same root without CAP_NET_ADMIN in its bounding set', async (t) => {
  const world = await healthyWorld(t, 'caps');
  const run = await runCheck(world, {}, { wrapper: ['setpriv', '--bounding-set=-net_admin', '--'] });
  t.equal(run.exitCode, 1);
  t.ok(failures(run).includes('host.privileges'), failures(run).join(', '));
  t.match(run.find('host.privileges'), { message: 'root lacks CAP_NET_ADMIN (iptables rules)', hint: /restricted container or under a reduced bounding set/ });
});

t.test('missing proxy user and group', async (t) => {
  const world = await healthyWorld(t, 'account');
  const run = await runCheck(world, { proxy: { user: 'mh-check-nouser', group: 'mh-check-nogroup' } });
  t.same(failures(run).filter((f) => f.startsWith('host.')), ['host.user', 'host.group']);
  t.match(run.find('host.user'), { message: 'user "mh-check-nouser" does not exist on this host; create it (the package does: useradd --system meshproxy) or set proxy.user', hint: 'create user mh-check-nouser or set proxy.user to an existing one' });
  t.match(run.find('host.group').message, 'group "mh-check-nogroup" does not exist');
});

t.test('proxy binary missing, or not executable', async (t) => {
  const world = await healthyWorld(t, 'noproxy');
  const run = await runCheck(world, { proxy: { binary: `${world.dir}/no-linkerd2-proxy` } });
  t.same(failures(run), ['binaries.proxy']);
  t.match(run.find('binaries.proxy'), { message: `${world.dir}/no-linkerd2-proxy: not found`, hint: /install linkerd2-proxy .* or set proxy\.binary/ });
  const notExecutable = join(world.dir, 'linkerd2-proxy-noexec');
  writeFileSync(notExecutable, '#!/bin/sh\nexit 64\n', { mode: 0o644 });
  const noexec = await runCheck(world, { proxy: { binary: notExecutable } });
  t.match(noexec.find('binaries.proxy'), { message: `${notExecutable}: exists but is not executable`, hint: `chmod 755 ${notExecutable}` });
});

t.test('an invalid configuration lists every problem and skips what needs it', async (t) => {
  const world = await healthyWorld(t, 'badcfg');
  const run = await runCheck(world, { log: { level: 'loud' }, admin: { port: 99999 } });
  t.equal(run.exitCode, 1);
  const valid = run.find('config.valid');
  t.equal(valid.result, 'error');
  t.match(valid.message, /^2 problems:\n- /);
  t.match(valid.message, '- log.level: got "loud"; must be one of');
  t.match(valid.message, '- admin.port: got 99999; must be a port number');
  t.equal(run.find('host.privileges').result, 'success', 'needs no configuration');
  t.equal(run.find('identity.skipped').result, 'skipped');
  t.same(failures(run), ['config.valid']);
});

t.test('every remote black-holed: check still ends within its bound, each check saying what timed out', { timeout: 120_000 }, async (t) => {
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
    { timeoutMs: 30_000 },
  );
  t.notOk(run.exitCode === undefined, 'check ended by itself, well before the 30 s kill');
  t.comment(`checks took ${run.report.durationMs} ms against the documented bound of 5000 ms`);
  t.equal(run.exitCode, 1);
  t.match(run.find('identity.svid').message, /sent no SVID within 3 s|did not finish within/);
  t.match(run.find('network.tcp', '198.51.100.7:8086').message, '198.51.100.7:8086 did not answer within 2 s: packets are dropped on the way');
  t.match(run.find('network.dns', 'policy.mh-check.test').message, /resolving policy\.mh-check\.test got no answer within 2 s|did not finish within/);
  t.match(run.find('network.dns', 'registrar.mh-check.test').message, /got no answer|did not finish within/);
  t.match(run.find('daemon.status'), { result: 'warning', message: /127\.0\.0\.1:14192 did not give mesh-harness status: no answer from 127\.0\.0\.1:14192 within 1500 ms/ });
});
