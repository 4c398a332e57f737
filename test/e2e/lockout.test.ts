/**
 * The daemon never cuts a machine off, whatever goes wrong at start-up: the built harness
 * runs in a network namespace with real iptables, real traffic checks what a workload, a
 * peer and SSH see, and a real notify socket records what systemd would be told.
 */
import t from 'tap';
import { execa } from 'execa';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DevCa } from '../../src/dev/ca.ts';
import { writeDevProxyLauncher } from '../../src/dev/proxy/launcher.ts';
import { harnessBin, repoRoot } from '../helpers/cli.ts';
import { startHarnessIn, type RunningHarness } from '../helpers/harness.ts';
import { childEnv, connectFrom, createNetns, linkNetns, startListeners, type Netns } from '../helpers/netns.ts';
import { startNotifyReceiver } from '../helpers/notify.ts';
import { tempDir, waitFor } from '../helpers/tmp.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

// Several harness runs, each to meshed and back, on a shared 2-core machine: more than
// the default per-file limit.
t.setTimeout(600_000);

const SPIFFE_ID = 'spiffe://root.linkerd.cluster.local/vm/core';
const VM_IP = '198.18.9.2';
const PEER_IP = '198.18.9.1';
const ADMIN_PORT = 14193;
const WORKLOAD = { uid: 1000, gid: 1000 };

interface Status {
  ready: boolean;
  components: Array<{ name: string; phase: string; ready: boolean; message: string; lastError?: string; detail?: Record<string, unknown> }>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

function startHarness(t: Teardown, vm: Netns, configPath: string, notifySocket: string): RunningHarness {
  return startHarnessIn(t, vm, configPath, notifySocket);
}

async function admin(vm: Netns, path: string): Promise<{ status: number; body: string }> {
  return JSON.parse(await vm.exec([process.execPath, '-e', `fetch('http://127.0.0.1:${ADMIN_PORT}${path}').then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })))`])) as { status: number; body: string };
}

async function status(vm: Netns): Promise<Status> {
  return JSON.parse((await admin(vm, '/status')).body) as Status;
}

const component = (s: Status, name: string) => s.components.find((c) => c.name === name)!;

/** Commands of the processes in the namespace, by pid. */
async function processesIn(vm: Netns): Promise<Map<number, string>> {
  const out = String((await execa('ip', ['netns', 'pids', vm.name], { env: childEnv(), extendEnv: false })).stdout);
  const found = new Map<number, string>();
  for (const pid of out.split('\n').filter(Boolean).map(Number)) {
    try {
      found.set(pid, readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim());
    } catch {
      // Exited meanwhile.
    }
  }
  return found;
}

async function network(t: Teardown, label: string) {
  const vm = await createNetns(t, `core-${label}`);
  const peer = await createNetns(t, `core-${label}-peer`);
  await linkNetns(vm, peer, { a: [`${VM_IP}/24`], b: [`${PEER_IP}/24`] });
  await startListeners(t, vm, [{ port: 8080, reply: 'workload' }, { port: 22, reply: 'ssh' }]);
  await startListeners(t, peer, [{ port: 9999, reply: 'peer' }]);
  return { vm, peer };
}

function baseConfig(socket: string, anchors: string, proxyBinary: string) {
  return {
    workload: { group: 'web', namespace: 'default', name: 'core-vm', ports: [8080] },
    identity: { spiffeId: SPIFFE_ID, serverName: 'web.default.vm.cluster.local', workloadApiSocket: `unix://${socket}`, trustAnchorsFile: anchors },
    proxy: { binary: proxyBinary, user: 'nobody', group: 'nogroup', destinationAddr: '127.0.0.1:8086', shutdownGrace: '2s', logLevel: 'info' },
    // The lock-out guarantees hold with the default onStop (keep); nothing is listed as ignored.
    iptables: { backend: 'nft', ipv6: 'off', ignoreInboundPorts: [8443] },
    admin: { port: ADMIN_PORT },
    log: { format: 'json', level: 'info' },
  };
}

t.test('a harness that can get no SVID leaves SSH, inbound and outbound TCP working and says why', { skip: SKIP_WITHOUT_SETUP, timeout: 180_000 }, async (t) => {
  const dir = tempDir(t, 'mh-core-');
  chmodSync(dir, 0o755);
  const { vm, peer } = await network(t, 'nosvid');
  const ca = await DevCa.create({ trustDomain: 'root.linkerd.cluster.local' });
  const anchors = join(dir, 'anchors.pem');
  writeFileSync(anchors, ca.bundlePem);
  const socket = join(dir, 'no-agent.sock');
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(baseConfig(socket, anchors, writeDevProxyLauncher(dir))));
  const notify = await startNotifyReceiver(t, join(dir, 'notify.sock'));
  const harness = startHarness(t, vm, configPath, join(dir, 'notify.sock'));

  const ready = await notify.waitFor('READY=1', 60_000);
  t.equal(ready.pid, harness.pid, 'READY=1 from the harness: systemd start returns instead of timing out');
  t.match(ready.message, /STATUS=identity: waiting for the Workload API socket/, 'STATUS= says why it is not meshed');
  const s = await status(vm);
  t.equal(s.ready, false, '/status: not meshed');
  t.equal(component(s, 'identity').phase, 'Pending');
  t.match(component(s, 'identity').message, /waiting for the Workload API socket/);
  t.equal(component(s, 'iptables').phase, 'Pending');
  t.match(component(s, 'iptables').message, /once the proxy answers ready/);
  t.equal((await admin(vm, '/ready')).status, 503);
  const cli = await execa('ip', ['netns', 'exec', vm.name, process.execPath, harnessBin, 'status', '--config', configPath], { env: childEnv(), extendEnv: false, reject: false });
  t.match(String(cli.stdout), /identity\s+Pending.*waiting for the Workload API socket/, '`mesh-harness status` names the reason');

  const rules = await vm.exec(['iptables-save', '-t', 'nat']);
  t.match(rules, /:MESH_HARNESS_INBOUND/, 'the chains are prepared');
  t.notMatch(rules, /-j MESH_HARNESS_/, 'nothing jumps into them');
  const inbound = await connectFrom(peer, { uid: 0, gid: 0 }, [{ host: VM_IP, port: 8080 }, { host: VM_IP, port: 22 }]);
  t.same(inbound, ['workload', 'ssh'], 'inbound TCP and SSH reach the machine');
  const [outbound] = await connectFrom(vm, WORKLOAD, [{ host: PEER_IP, port: 9999 }]);
  t.equal(outbound, 'peer', 'outbound TCP from a workload user works');

  process.kill(harness.pid, 'SIGTERM');
  const result = await harness.child;
  t.equal(result.exitCode, 0, 'a clean stop exits 0');
  t.notMatch(await vm.exec(['iptables-save', '-t', 'nat']), /MESH_HARNESS/, 'onStop=keep, but nothing was ever redirected: the prepared chains are gone');
  const [after] = await connectFrom(vm, WORKLOAD, [{ host: PEER_IP, port: 9999 }]);
  t.equal(after, 'peer');
});

t.test('SIGHUP during a failing first apply, all-or-nothing reload, and no child outlives a SIGKILLed harness', { skip: SKIP_WITHOUT_SETUP, timeout: 300_000 }, async (t) => {
  const dir = tempDir(t, 'mh-core-');
  chmodSync(dir, 0o755);
  const { vm } = await network(t, 'hup');
  const socket = join(dir, 'api.sock');
  const anchors = join(dir, 'anchors.pem');
  const api = execa(process.execPath, [join(repoRoot, 'dist', 'dev-workload-api.js'), '--socket', socket, '--spiffe-id', SPIFFE_ID, '--ttl', '10m', '--trust-anchors-out', anchors, '--log-level', 'warn'], { env: childEnv(), extendEnv: false, reject: false });
  t.teardown(() => {
    api.kill('SIGKILL');
  });
  await waitFor('the Workload API socket', () => (existsSync(socket) && existsSync(anchors) ? true : undefined), 30_000);
  chmodSync(socket, 0o777);
  const config = baseConfig(socket, anchors, writeDevProxyLauncher(dir));
  const configPath = join(dir, 'config.json');
  const writeConfig = (value: unknown) => writeFileSync(configPath, JSON.stringify(value, null, 2));
  writeConfig(config);
  const notify = await startNotifyReceiver(t, join(dir, 'notify.sock'));

  // A native nft rule in table ip nat makes iptables-nft-save refuse the table: every
  // install attempt fails until it is gone (a real, transient failure).
  await vm.exec(['nft', 'add table ip nat']);
  await vm.exec(['nft', 'add chain ip nat MH_FOREIGN']);
  await vm.exec(['nft', 'add rule ip nat MH_FOREIGN tcp dport 1 meta mark set 0x1 ct mark set meta mark counter']);

  let harness = startHarness(t, vm, configPath, join(dir, 'notify.sock'));
  await t.test('the first apply fails and is retried; SIGHUP meanwhile; then startup completes', async (t) => {
    const failing = await waitFor('iptables retrying', async () => {
      const c = component(await status(vm), 'iptables');
      return c.phase === 'Degraded' ? c : undefined;
    }, 60_000, 200);
    t.match(failing.message, /retrying in/);
    writeConfig({ ...config, iptables: { ...config.iptables, ignoreOutboundPorts: [5432] } });
    process.kill(harness.pid, 'SIGHUP');
    await notify.waitFor('RELOADING=1', 30_000);
    await waitFor('the reload to finish', () => (harness.log.some((l) => l.msg === 'configuration reloaded') ? true : undefined), 30_000);
    await vm.exec(['nft', 'flush chain ip nat MH_FOREIGN']);
    await vm.exec(['nft', 'delete chain ip nat MH_FOREIGN']);
    const s = await waitFor('meshed', async () => {
      const st = await status(vm);
      return st.ready ? st : undefined;
    }, 90_000, 200);
    t.equal(component(s, 'proxy').phase, 'Ready', 'the proxy started');
    const rules = await vm.exec(['iptables-save', '-t', 'nat']);
    t.match(rules, /--dports 5432 .*-j RETURN/, 'the reloaded configuration is the one applied');
    t.match(rules, /-A OUTPUT .*-j MESH_HARNESS_OUTBOUND/, 'the jumps went in once the proxy was ready');
    const [outbound] = await connectFrom(vm, WORKLOAD, [{ host: PEER_IP, port: 9999 }]);
    t.match(outbound, /mesh-dev-proxy outbound/, 'workload traffic now goes through the proxy');
  });

  await t.test('a reload the second of three components refuses changes none of them', async (t) => {
    const before = await status(vm);
    const proxyPid = component(before, 'proxy').detail?.pid;
    const rulesBefore = (await vm.exec(['iptables-save', '-t', 'nat'])).split('\n').filter((l) => !l.startsWith('#')).join('\n');
    // identity (first) would reopen its stream on another socket, iptables (second) cannot
    // resolve the group, the proxy (third) would restart for the new log level.
    writeConfig({
      ...config,
      identity: { ...config.identity, workloadApiSocket: `unix://${join(dir, 'other.sock')}` },
      proxy: { ...config.proxy, group: 'mh-core-no-such-group', logLevel: 'debug' },
      iptables: { ...config.iptables, ignoreOutboundPorts: [5432] },
    });
    process.kill(harness.pid, 'SIGHUP');
    const refused = await waitFor('the refusal in /status', async () => {
      const c = component(await status(vm), 'config');
      return /refused/.test(c.message) ? c : undefined;
    }, 30_000, 200);
    t.match(refused.message, /reload refused by iptables: running the previous configuration/);
    t.match(refused.lastError, /iptables: proxy\.group: got "mh-core-no-such-group"/);
    const after = await status(vm);
    t.equal(after.ready, true, 'still meshed on the previous configuration');
    t.equal(component(after, 'identity').phase, 'Ready');
    t.equal(component(after, 'identity').detail?.socket, `unix://${socket}`, 'identity kept its socket');
    t.notMatch(component(after, 'identity').message, /other\.sock/);
    t.equal(component(after, 'proxy').detail?.pid, proxyPid, 'the proxy was not restarted');
    t.equal((await vm.exec(['iptables-save', '-t', 'nat'])).split('\n').filter((l) => !l.startsWith('#')).join('\n'), rulesBefore, 'the rules did not change');
    writeConfig({ ...config, iptables: { ...config.iptables, ignoreOutboundPorts: [5432] } });
  });

  await t.test('SIGTERM after all that: a clean stop exits 0', async (t) => {
    process.kill(harness.pid, 'SIGTERM');
    const result = await harness.child;
    t.equal(result.exitCode, 0);
  });

  await t.test('SIGKILL of the harness: no nft monitor, proxy or other child remains in the namespace', async (t) => {
    harness = startHarness(t, vm, configPath, join(dir, 'notify.sock'));
    // What a rollout waits on after each restart: it returns once the daemon answers ready.
    const waited = await execa('ip', ['netns', 'exec', vm.name, process.execPath, harnessBin, 'status', '--wait', '--timeout', '90s', '--config', configPath], { env: childEnv(), extendEnv: false, reject: false });
    t.equal(waited.exitCode, 0, `status --wait: ${waited.stderr}`);
    t.match(String(waited.stdout), /: READY\n/);
    t.equal((await status(vm)).ready, true, 'meshed again');
    // Two reloads that change the rules: still one nft monitor (watching is idempotent).
    for (const ports of [[5432, 5433], [5432, 5434]]) {
      writeConfig({ ...config, iptables: { ...config.iptables, ignoreOutboundPorts: ports } });
      process.kill(harness.pid, 'SIGHUP');
      await waitFor(`port ${ports[1]} in the rules`, async () => ((await vm.exec(['iptables-save', '-t', 'nat'])).includes(String(ports[1])) ? true : undefined), 30_000, 100);
    }
    const ours = (cmd: string) => /\bnft monitor\b|dev-proxy|linkerd2-proxy|iptables|mesh-harness|setpriv/.test(cmd);
    const running = [...(await processesIn(vm)).values()].filter(ours);
    t.equal(running.filter((c) => /\bnft monitor$/.test(c)).length, 1, `one nft monitor while the harness runs (${running.join(' | ')})`);
    process.kill(harness.pid, 'SIGKILL');
    await harness.child;
    const left = await waitFor('the children to die with the harness', async () => {
      const rest = [...(await processesIn(vm)).entries()].filter(([, c]) => ours(c));
      return rest.length === 0 ? rest : undefined;
    }, 15_000, 100).catch(async () => [...(await processesIn(vm)).entries()].filter(([, c]) => ours(c)));
    t.same(left, [], 'nothing of ours is left');
  });
});

t.test('a run that cannot start removes the jumps an earlier run kept, unless another harness owns them', { timeout: 180_000 }, async (t) => {
  const dir = tempDir(t, 'mh-core-');
  chmodSync(dir, 0o755);
  const { vm, peer } = await network(t, 'badcfg');
  const ca = await DevCa.create({ trustDomain: 'root.linkerd.cluster.local' });
  const anchors = join(dir, 'anchors.pem');
  writeFileSync(anchors, ca.bundlePem);
  const good = baseConfig(join(dir, 'no-agent.sock'), anchors, writeDevProxyLauncher(dir));
  const goodPath = join(dir, 'good.json');
  writeFileSync(goodPath, JSON.stringify(good));
  // A configuration from a newer version (a downgrade): an unknown key.
  const badPath = join(dir, 'bad.json');
  writeFileSync(badPath, JSON.stringify({ ...good, iptables: { ...good.iptables, futureSetting: true } }));
  const run = (config: string) => execa('ip', ['netns', 'exec', vm.name, process.execPath, harnessBin, 'run', '--config', config], { env: childEnv(), extendEnv: false, reject: false, timeout: 60_000 });

  await t.test('an invalid configuration: exit 78, and the kept jumps are gone', async (t) => {
    // What a stop under onStop=keep leaves: the whole ruleset, jumps included, and no proxy.
    const apply = await execa('ip', ['netns', 'exec', vm.name, process.execPath, harnessBin, 'iptables', 'apply', '--config', goodPath], { env: childEnv(), extendEnv: false, reject: false });
    t.equal(apply.exitCode, 0, apply.stderr);
    const [cutOff] = await connectFrom(vm, WORKLOAD, [{ host: PEER_IP, port: 9999 }]);
    t.not(cutOff, 'peer', 'with jumps and no proxy, outbound TCP does not reach the peer');

    const result = await run(badPath);
    t.equal(result.exitCode, 78, 'a configuration error');
    t.match(result.stderr, /iptables\.futureSetting: got true; unknown key/);
    t.match(result.stderr, /removed the redirect rules left in place, since no proxy will run/);
    t.notMatch(await vm.exec(['iptables-save', '-t', 'nat']), /MESH_HARNESS/, 'no rule of the harness is left');
    const [outbound] = await connectFrom(vm, WORKLOAD, [{ host: PEER_IP, port: 9999 }]);
    t.equal(outbound, 'peer', 'outbound TCP works again');
    const inbound = await connectFrom(peer, { uid: 0, gid: 0 }, [{ host: VM_IP, port: 22 }]);
    t.same(inbound, ['ssh']);
  });

  await t.test('another harness answering on the admin port keeps its rules', async (t) => {
    // The running harness on the default admin port: the failing run cannot know another.
    const runningPath = join(dir, 'running.json');
    writeFileSync(runningPath, JSON.stringify({ ...good, admin: { port: 4192 } }));
    const notify = await startNotifyReceiver(t, join(dir, 'notify.sock'));
    const running = startHarness(t, vm, runningPath, join(dir, 'notify.sock'));
    await notify.waitFor('READY=1', 60_000);
    t.match(await vm.exec(['iptables-save', '-t', 'nat']), /:MESH_HARNESS_INBOUND/, 'its chains are prepared');

    const result = await run(badPath);
    t.equal(result.exitCode, 78);
    t.match(result.stderr, new RegExp(`another mesh-harness \\(pid ${running.pid}\\) answers on 127\\.0\\.0\\.1:4192; its redirect rules were left alone`));
    t.notOk(running.log.some((l) => /repaired iptables drift/.test(l.msg)), 'the running harness had nothing to repair');
    process.kill(running.pid, 'SIGTERM');
    t.equal((await running.child).exitCode, 0);
  });
});
