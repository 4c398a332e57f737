/**
 * The node agent end to end: real SPIRE server and agent, the harness in a network
 * namespace with real iptables, the development proxy as its child, systemd's notify
 * socket stood in for by a real datagram socket that checks sender credentials.
 */
import t from 'tap';
import { execa } from 'execa';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeDevProxyLauncher } from '../../src/dev/proxy/launcher.ts';
import { alive, startHarnessIn, type RunningHarness } from '../helpers/harness.ts';
import { childEnv, connectFrom, createNetns, linkNetns, startListeners } from '../helpers/netns.ts';
import { startNotifyReceiver } from '../helpers/notify.ts';
import { SKIP_WITHOUT_SPIRE, SpireServer } from '../helpers/spire.ts';
import { tempDir, waitFor } from '../helpers/tmp.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

const SPIFFE_ID = 'spiffe://root.linkerd.cluster.local/vm/web';

t.test('the harness brings the VM into the mesh and keeps it there', { skip: SKIP_WITHOUT_SETUP || SKIP_WITHOUT_SPIRE, timeout: 240_000 }, async (t) => {
  const dir = tempDir(t, 'mh-e2e-');
  chmodSync(dir, 0o755);
  const devProxyBin = writeDevProxyLauncher(dir);
  const server = await SpireServer.start(t, { defaultSvidTtl: '1m' });
  const agent = await server.startAgent('vm');
  // The proxy runs as nobody and must reach the agent socket.
  chmodSync(server.dir, 0o755);
  chmodSync(agent.dir, 0o755);
  // The harness (root here; group meshproxy in production) and the proxy (nogroup) hold the same identity.
  for (const gid of [0, 65534]) await server.createEntry({ parentId: agent.spiffeId, spiffeId: SPIFFE_ID, selector: `unix:gid:${gid}`, x509SvidTtl: 60 });

  const vm = await createNetns(t, 'e2e-vm');
  const peer = await createNetns(t, 'e2e-peer');
  await linkNetns(vm, peer, { a: ['198.18.7.2/24'], b: ['198.18.7.1/24'] });
  await startListeners(t, vm, [{ port: 8080, reply: 'workload' }]);
  await startListeners(t, peer, [{ port: 9999, reply: 'peer-direct' }]);

  const adminPort = 14192;
  const baseConfig = {
    workload: { group: 'web', namespace: 'default', name: 'web-vm-1', ports: [8080] },
    identity: { spiffeId: SPIFFE_ID, serverName: 'web.default.vm.cluster.local', workloadApiSocket: `unix://${agent.socketPath}`, trustAnchorsFile: server.anchorsFile, expiryMargin: '5s' },
    proxy: { binary: devProxyBin, user: 'nobody', group: 'nogroup', destinationAddr: '127.0.0.1:8086', shutdownGrace: '2s', logLevel: 'info' },
    iptables: { onStop: 'clean' },
    admin: { port: adminPort },
    log: { format: 'json', level: 'info' },
  };
  const configPath = join(dir, 'config.json');
  const writeConfig = (value: unknown) => writeFileSync(configPath, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
  writeConfig(baseConfig);

  const notify = await startNotifyReceiver(t, join(dir, 'notify.sock'));

  const startHarness = (): RunningHarness => startHarnessIn(t, vm, configPath, join(dir, 'notify.sock'));

  const admin = async (path: string): Promise<string> =>
    vm.exec([process.execPath, '-e', `fetch('http://127.0.0.1:${adminPort}${path}').then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })))`]);
  const status = async () => JSON.parse(JSON.parse(await admin('/status')).body) as { ready: boolean; components: Array<{ name: string; phase: string; ready: boolean; lastError?: string; message: string; detail?: Record<string, unknown> }> };
  const proxyPid = async () => (await status()).components.find((c) => c.name === 'proxy')?.detail?.pid as number | undefined;
  const iptablesSave = () => vm.exec(['iptables-save', '-t', 'nat']);

  let harness = startHarness();

  await t.test('READY=1 reaches the notify socket from the harness PID, only once everything is ready', async (t) => {
    const ready = await notify.waitFor('READY=1', 90_000);
    t.equal(ready.pid, harness.pid, 'the kernel-verified sender is the main PID (NotifyAccess=main works)');
    const s = await status();
    t.equal(s.ready, true);
    t.same(s.components.filter((c) => !c.ready).map((c) => c.name), []);
    const statuses = notify.received.filter((n) => n.at <= ready.at).map((n) => n.message).join('\n');
    t.match(statuses, /STATUS=identity: /, 'STATUS said what it waited for before READY');
  });

  await t.test('the proxy was started only after the SVID was validated (from the harness event log)', async (t) => {
    const svidValid = harness.log.find((l) => l.component === 'identity' && l.phase === 'Ready');
    const spawned = harness.log.find((l) => l.component === 'proxy' && l.event === 'proxy-spawned');
    t.ok(svidValid, 'identity logged its SVID as valid');
    t.ok(spawned, 'the proxy spawn was logged');
    t.ok(Date.parse(spawned!.time) >= Date.parse(svidValid!.time), `proxy spawned at ${spawned!.time}, SVID valid at ${svidValid!.time}`);
    t.notOk(harness.log.slice(0, harness.log.indexOf(svidValid!)).some((l) => l.event === 'proxy-spawned'), 'no spawn before the SVID');
  });

  await t.test('workload traffic goes through the proxy', async (t) => {
    const [outbound] = await connectFrom(vm, { uid: 1000, gid: 1000 }, [{ host: '198.18.7.1', port: 9999 }]);
    t.match(outbound, /mesh-dev-proxy outbound/, 'an outbound connection from a workload uid reached the proxy');
  });

  await t.test('SIGKILL of the proxy: readiness drops, it is restarted, readiness returns, the restart is counted', async (t) => {
    const before = await proxyPid();
    t.ok(before && alive(before));
    const killedAt = new Date();
    process.kill(before!, 'SIGKILL');
    const after = await waitFor('a new proxy pid', async () => {
      const pid = await proxyPid();
      return pid && pid !== before ? pid : undefined;
    }, 60_000, 200);
    t.ok(alive(after));
    await waitFor('ready again', async () => ((await status()).ready ? true : undefined), 60_000, 200);
    const dropped = harness.log.find((l) => l.component === 'proxy' && l.phase !== undefined && l.phase !== 'Ready' && Date.parse(l.time) >= killedAt.getTime() - 5);
    t.ok(dropped, `the proxy left Ready after the kill (${dropped?.phase})`);
    const metrics = JSON.parse(await admin('/metrics')).body as string;
    t.match(metrics, /^mesh_harness_child_restarts_total\{child="proxy"\} 1$/m);
  });

  await t.test('SIGHUP with an added ignored port changes the rules without restarting the proxy', async (t) => {
    const pid = await proxyPid();
    const reloadsBefore = notify.received.filter((n) => n.message.includes('RELOADING=1')).length;
    writeConfig({ ...baseConfig, iptables: { ...baseConfig.iptables, ignoreInboundPorts: [22, 4190, 4191, 5555] } });
    process.kill(harness.pid, 'SIGHUP');
    await waitFor('port 5555 in the rules', async () => ((await iptablesSave()).includes('5555') ? true : undefined), 30_000, 100);
    await waitFor('RELOADING=1', () => (notify.received.filter((n) => n.message.includes('RELOADING=1')).length > reloadsBefore ? true : undefined));
    t.equal(await proxyPid(), pid, 'same proxy PID');
  });

  await t.test('SIGHUP with a changed proxy log level restarts the proxy', async (t) => {
    const pid = await proxyPid();
    writeConfig({ ...baseConfig, proxy: { ...baseConfig.proxy, logLevel: 'debug' }, iptables: { ...baseConfig.iptables, ignoreInboundPorts: [22, 4190, 4191, 5555] } });
    process.kill(harness.pid, 'SIGHUP');
    const next = await waitFor('a restarted proxy', async () => {
      const p = await proxyPid();
      return p && p !== pid ? p : undefined;
    }, 60_000, 200);
    t.not(next, pid);
    await waitFor('ready again', async () => ((await status()).ready ? true : undefined), 60_000, 200);
  });

  await t.test('an invalid config on SIGHUP keeps the old one running and shows why in status', async (t) => {
    const pid = await proxyPid();
    writeConfig({ ...baseConfig, proxy: { ...baseConfig.proxy, inboundPort: 'many' } });
    process.kill(harness.pid, 'SIGHUP');
    const config = await waitFor('the rejected reload in status', async () => (await status()).components.find((c) => c.name === 'config' && c.lastError), 30_000, 200);
    t.match(config.lastError, /proxy\.inboundPort: got "many"/);
    t.match(config.message, /reload rejected/);
    const s = await status();
    t.equal(s.ready, true, 'still ready on the previous configuration');
    t.equal(await proxyPid(), pid);
  });

  await t.test('SIGKILL of the harness leaves no child; a new harness converges without duplicates', async (t) => {
    writeConfig(baseConfig);
    const pid = (await proxyPid())!;
    process.kill(harness.pid, 'SIGKILL');
    await harness.child;
    await waitFor('the proxy to die with the harness', () => (alive(pid) ? undefined : true), 15_000, 100);
    t.notOk(alive(pid), 'no orphaned proxy');

    harness = startHarness();
    const again = await waitFor('READY=1 from the new harness', () => notify.received.find((n) => n.message.split('\n').includes('READY=1') && n.pid === harness.pid), 90_000, 100);
    t.equal(again.pid, harness.pid);
    const rules = await iptablesSave();
    t.equal(rules.split('\n').filter((l) => /-A PREROUTING .*-j MESH_HARNESS_INBOUND/.test(l)).length, 1, 'one inbound jump');
    t.equal(rules.split('\n').filter((l) => /-A OUTPUT .*-j MESH_HARNESS_OUTBOUND/.test(l)).length, 1, 'one outbound jump');
    // Only this namespace's processes: other harnesses (a benchmark, another test) may run on the host.
    const pids = String((await execa('ip', ['netns', 'pids', vm.name], { env: childEnv(), extendEnv: false })).stdout).split('\n').filter(Boolean);
    const devProxies = pids.filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('dev-proxy.js');
      } catch {
        return false;
      }
    });
    t.equal(devProxies.length, 1, `exactly one proxy process in the vm (${devProxies.join(',')})`);
  });

  await t.test('SIGTERM: STOPPING=1, the proxy drains, rules are removed (onStop clean), exit 0', async (t) => {
    const pid = (await proxyPid())!;
    process.kill(harness.pid, 'SIGTERM');
    const result = await harness.child;
    t.equal(result.exitCode, 0);
    await notify.waitFor('STOPPING=1');
    t.notOk(alive(pid), 'the proxy is gone');
    t.notMatch(await iptablesSave(), /MESH_HARNESS/, 'no owned rules left');
  });
});
