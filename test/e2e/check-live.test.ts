/**
 * `mesh-harness check` against live pieces: a real SPIRE agent that attests the caller by
 * its group (check must ask as the daemon's group, as the daemon would), and a running
 * harness whose ports and /status check must recognise as its own.
 */
import t from 'tap';
import { execa, type ResultPromise } from 'execa';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeDevProxyLauncher } from '../../src/dev/proxy/launcher.ts';
import { harnessBin } from '../helpers/cli.ts';
import { failures, healthyWorld, runCheck, SPIFFE_ID, type Json } from '../helpers/check-world.ts';
import { childEnv } from '../helpers/netns.ts';
import { SKIP_WITHOUT_SPIRE, SpireServer } from '../helpers/spire.ts';
import { waitFor, writeJson } from '../helpers/tmp.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

t.test('real SPIRE: check asks as proxy.group, and names the selector to register when nothing matches', { skip: SKIP_WITHOUT_SETUP || SKIP_WITHOUT_SPIRE, timeout: 180_000 }, async (t) => {
  const world = await healthyWorld(t, 'spire');
  const server = await SpireServer.start(t);
  const agent = await server.newAgent('vm');
  const meshproxyGid = Number((await execa('getent', ['group', 'meshproxy'])).stdout.split(':')[2]);
  // Only the daemon's group is registered: a root shell (gid 0) asking as itself would get nothing.
  await server.createEntry({ parentId: agent.spiffeId, spiffeId: SPIFFE_ID, selector: `unix:gid:${meshproxyGid}`, x509SvidTtl: 600 });
  await agent.restart();
  // The agent serves an entry from its first sync after start: wait until the daemon's group gets it.
  await waitFor('the entry to be served to the meshproxy group', async () => {
    const fetched = await execa('setpriv', [`--regid=${meshproxyGid}`, '--clear-groups', 'spire-agent', 'api', 'fetch', 'x509', '-socketPath', agent.socketPath], { reject: false });
    return fetched.exitCode === 0 ? true : undefined;
  }, 30_000, 500);
  const identity = { workloadApiSocket: `unix://${agent.socketPath}`, trustAnchorsFile: server.anchorsFile };

  const served = await runCheck(world, { identity });
  t.match(served.find('identity.svid'), { result: 'success', message: new RegExp(`from ${agent.socketPath}, asked as gid ${meshproxyGid} \\(proxy\\.group\\) as the daemon does$`) });
  t.equal(served.find('identity.chain').result, 'success', 'SPIRE signs under the upstream anchor');
  t.equal(served.find('identity.clock').result, 'success');
  t.same(failures(served).filter((f) => f.startsWith('identity.')), []);

  const refused = await runCheck(world, { identity, proxy: { group: 'nogroup' } });
  const svid = refused.find('identity.svid');
  t.equal(svid.result, 'error');
  t.match(svid.message, /^no identity issued \(PermissionDenied: .*\): no SPIRE registration entry matches this process yet$/);
  t.equal(svid.hint, `create the registration entry: spire-server entry create -parentID <this agent's SPIFFE ID> -spiffeID ${SPIFFE_ID} -selector unix:gid:65534`);
});

function httpStatusIn(ns: string, port: number, path: string): Promise<number> {
  const script = `require('node:http').get({ host: '127.0.0.1', port: ${port}, path: '${path}' }, (r) => { console.log(r.statusCode); r.resume(); }).on('error', () => console.log(0))`;
  return execa('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { env: childEnv(), extendEnv: false, reject: false }).then((r) => Number(r.stdout));
}

t.test('a running harness: its ports and its proxy child are ours, and its components are shown', { skip: SKIP_WITHOUT_SETUP, timeout: 180_000 }, async (t) => {
  const world = await healthyWorld(t, 'daemon');
  // Its own directory: the world's linkerd2-proxy stand-in stays what check probes.
  const proxyDir = join(world.dir, 'dev-proxy');
  mkdirSync(proxyDir, { mode: 0o755 });
  const config: Json = {
    ...world.config,
    proxy: { binary: writeDevProxyLauncher(proxyDir), user: 'nobody', group: 'nogroup', destinationAddr: '127.0.0.1:8086', shutdownGrace: '2s' },
    iptables: { enabled: false },
    log: { format: 'json' },
  };
  const configPath = writeJson(world.dir, 'daemon.json', config);
  const daemon: ResultPromise = execa('ip', ['netns', 'exec', world.ns.name, process.execPath, harnessBin, 'run', '--config', configPath], { env: childEnv(), extendEnv: false, reject: false, buffer: true });
  t.teardown(async () => {
    daemon.kill('SIGTERM');
    await daemon;
  });
  await waitFor('the harness to be ready', async () => ((await httpStatusIn(world.ns.name, 4192, '/ready')) === 200 ? true : undefined), 90_000, 500);

  const run = await runCheck(world, { proxy: { user: 'nobody', group: 'nogroup', destinationAddr: '127.0.0.1:8086' }, iptables: { enabled: false } });
  t.same(failures(run), [], run.stdout);
  t.match(run.find('network.port', '4192').message, /^held on 127\.0\.0\.1:4192 by the running mesh-harness, node \(pid \d+\)$/);
  t.match(run.find('network.port', '4143').message, /by node \(pid \d+\), started by the running mesh-harness \(pid \d+\)$/);
  t.match(run.find('daemon.status', 'harness'), { result: 'success', description: /^mesh-harness \d+\.\d+\.\d+ \(pid \d+\)$/, message: /^ready/ });
  for (const component of ['identity', 'proxy']) t.match(run.find('daemon.status', component), { result: 'success', message: /^Ready: / }, component);
});
