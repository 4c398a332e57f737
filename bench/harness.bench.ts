/**
 * The daemon with its children, against a real SPIRE agent, in a network namespace:
 * - `run` to ready, split from the harness's own event log into SPIRE's time (identity
 *   start -> SVID validated), the proxy's own time (spawn -> the proxy logs its
 *   certificate), and the harness's share (everything else: process start, config,
 *   iptables, spawning, and noticing that the proxy is ready);
 * - idle CPU and memory of the harness with every component running (identity Ready,
 *   rules applied, proxy supervised): RssAnon (private memory), RssFile and VmRSS;
 * - restart latency after the proxy is SIGKILLed (kill -> ready again).
 *
 * MESH_HARNESS_BENCH_ROOT runs another build of the package (a "before" checkout).
 * MESH_HARNESS_BENCH_QUICK=1 skips the restart series.
 */
import { execa } from 'execa';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { writeDevProxyLauncher } from '../src/dev/proxy/launcher.ts';
import { SpireServer, spireAvailable } from '../test/helpers/spire.ts';
import { median, memoryMb, percentile, rssMb, writeResults } from './lib.ts';

const root = process.env.MESH_HARNESS_BENCH_ROOT ?? join(fileURLToPath(new URL('.', import.meta.url)), '..');
const quick = process.env.MESH_HARNESS_BENCH_QUICK === '1';
const SPIFFE_ID = 'spiffe://root.linkerd.cluster.local/vm/bench';
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' };
const teardowns: Array<() => unknown> = [];
const t = { teardown: (fn: () => unknown) => teardowns.push(fn) };

interface LogLine { time: string; component: string; msg: string; phase?: string; event?: string; pid?: number }

const clockTicks = 100;
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface SvidSource {
  socketPath: string;
  anchorsFile: string;
  /** What served the Workload API, for the results. */
  name: string;
}

async function spireSource(_dir: string): Promise<SvidSource> {
  const server = await SpireServer.start(t, { defaultSvidTtl: '10m' });
  const agent = await server.startAgent('bench');
  chmodSync(server.dir, 0o755);
  chmodSync(agent.dir, 0o755);
  for (const gid of [0, 65534]) await server.createEntry({ parentId: agent.spiffeId, spiffeId: SPIFFE_ID, selector: `unix:gid:${gid}`, x509SvidTtl: 600 });
  // The agent syncs new entries every few seconds; wait so the first run measures the harness, not the sync.
  await sleep(7000);
  return { socketPath: agent.socketPath, anchorsFile: server.anchorsFile, name: 'spire-agent' };
}

/** Without SPIRE installed: the development Workload API (real gRPC, real X.509 SVIDs), as in the demo. */
async function devWorkloadApiSource(dir: string): Promise<SvidSource> {
  const socketPath = join(dir, 'agent.sock');
  const anchorsFile = join(dir, 'trust-anchors.pem');
  const server = execa(process.execPath, [join(root, 'dist', 'dev-workload-api.js'), '--socket', socketPath, '--spiffe-id', SPIFFE_ID, '--ttl', '10m', '--trust-anchors-out', anchorsFile, '--log-level', 'warn'], { env, extendEnv: false, reject: false });
  teardowns.push(() => {
    server.kill('SIGKILL');
    return server;
  });
  for (let i = 0; i < 200 && !(existsSync(socketPath) && existsSync(anchorsFile)); i++) await sleep(50);
  return { socketPath, anchorsFile, name: 'dev-workload-api (spire-server not installed)' };
}

async function main(): Promise<void> {
  const ns = `mh-bench-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'mh-bench-'));
  chmodSync(dir, 0o755);
  await execa('ip', ['netns', 'add', ns]);
  teardowns.push(() => execa('ip', ['netns', 'del', ns], { reject: false }));
  teardowns.push(() => rmSync(dir, { recursive: true, force: true }));
  await execa('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);

  const source = spireAvailable() ? await spireSource(dir) : await devWorkloadApiSource(dir);

  const proxyBinary = writeDevProxyLauncher(dir);
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({
    workload: { name: 'bench', ports: [8080] },
    identity: { spiffeId: SPIFFE_ID, serverName: 'bench.vm.cluster.local', workloadApiSocket: `unix://${source.socketPath}`, trustAnchorsFile: source.anchorsFile },
    proxy: { binary: proxyBinary, user: 'nobody', group: 'nogroup', destinationAddr: '127.0.0.1:8086', shutdownGrace: '2s' },
    iptables: { onStop: 'clean' },
    log: { format: 'json', level: 'info' },
  }));

  const totals: number[] = [];
  const spireWaits: number[] = [];
  const proxyWaits: number[] = [];
  const overheads: number[] = [];
  const noticing: number[] = [];
  let idle: { cpuPerHour: number; memory: ReturnType<typeof memoryMb>; proxyRss: number } | undefined;
  const restarts: number[] = [];

  for (let run = 0; run < 5; run++) {
    const spawnedAt = Date.now();
    const child = execa('ip', ['netns', 'exec', ns, process.execPath, join(root, 'bin', 'mesh-harness.mjs'), 'run', '--config', config], { env, extendEnv: false, reject: false, buffer: false });
    const log: LogLine[] = [];
    createInterface({ input: child.stderr! }).on('line', (line) => {
      try {
        log.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    });
    const at = (pred: (l: LogLine) => boolean) => {
      const line = log.find(pred);
      return line ? Date.parse(line.time) : undefined;
    };
    const readyAt = async () => {
      for (;;) {
        const times = ['identity', 'iptables', 'proxy'].map((c) => at((l) => l.component === c && l.phase === 'Ready'));
        if (times.every((x) => x !== undefined)) return Math.max(...(times as number[]));
        if (child.exitCode !== undefined && child.exitCode !== null) throw new Error(`harness exited ${child.exitCode}: ${JSON.stringify(log.slice(-5))}`);
        await sleep(20);
      }
    };
    const ready = await readyAt();
    const identityStart = at((l) => l.component === 'identity' && l.phase === 'Starting')!;
    const svid = at((l) => l.component === 'identity' && l.phase === 'Ready')!;
    const proxySpawn = at((l) => l.event === 'proxy-spawned')!;
    const proxyCertified = at((l) => l.component === 'proxy' && /^Certified identity/.test(l.msg))!;
    const proxyReady = at((l) => l.component === 'proxy' && l.phase === 'Ready')!;
    const total = ready - spawnedAt;
    totals.push(total);
    spireWaits.push(svid - identityStart);
    proxyWaits.push(proxyCertified - proxySpawn);
    noticing.push(proxyReady - proxyCertified);
    overheads.push(total - (svid - identityStart) - (proxyCertified - proxySpawn));

    if (run === 0) {
      const pid = child.pid!;
      // From the harness's own log, not pgrep: other dev proxies may run on this machine.
      const proxyPid = () => [...log].reverse().find((l) => l.event === 'proxy-spawned')!.pid!;
      await sleep(3000);
      const cpu0 = cpuSeconds(pid);
      const windowMs = 30_000;
      await sleep(windowMs);
      const cpu = cpuSeconds(pid) - cpu0;
      idle = { cpuPerHour: (cpu * 3_600_000) / windowMs, memory: memoryMb(pid), proxyRss: rssMb(proxyPid()) };

      // Each kill comes after the supervisor's 30 s stable period, so each measures a first
      // restart (base backoff), the case an operator sees after an occasional crash.
      for (let i = 0; i < (quick ? 0 : 3); i++) {
        const victim = proxyPid();
        const seen = log.length;
        const killedAt = Date.now();
        process.kill(victim, 'SIGKILL');
        for (;;) {
          const line = log.slice(seen).find((l) => l.component === 'proxy' && l.phase === 'Ready');
          if (line) {
            restarts.push(Date.parse(line.time) - killedAt);
            break;
          }
          await sleep(10);
        }
        await sleep(32_000);
      }
    }
    child.kill('SIGTERM');
    await child;
  }

  const sorted = (v: number[]) => [...v].sort((a, b) => a - b);
  writeResults(process.env.MESH_HARNESS_BENCH_ROOT ? 'harness-baseline' : 'harness', [
    { name: 'run to ready, total (median)', value: median(totals), unit: 'ms', detail: { samples: totals, workloadApi: source.name } },
    { name: `  waiting on the Workload API, ${source.name.split(' ')[0]} (median)`, value: median(spireWaits), unit: 'ms', detail: { samples: spireWaits } },
    { name: "  the proxy's own time (median)", value: median(proxyWaits), unit: 'ms', detail: { samples: proxyWaits, note: 'spawn -> the proxy logs its certificate' } },
    { name: "  harness's share (median)", value: median(overheads), unit: 'ms', detail: { samples: overheads, note: 'process start, config, admin, iptables apply, user lookup, spawning, noticing the proxy is ready' } },
    { name: '    of which noticing the proxy is ready (median)', value: median(noticing), unit: 'ms', detail: { samples: noticing, note: 'the proxy logs its certificate -> the harness marks it Ready' } },
    { name: 'idle harness CPU with proxy running', value: idle!.cpuPerHour, unit: 'CPU-s/h', detail: { windowSeconds: 30 } },
    { name: 'idle harness RssAnon (private), all components running', value: idle!.memory.rssAnon, unit: 'MB' },
    { name: 'idle harness RssFile, all components running', value: idle!.memory.rssFile, unit: 'MB' },
    { name: 'idle harness VmRSS, all components running', value: idle!.memory.vmRss, unit: 'MB' },
    { name: 'idle dev proxy RSS', value: idle!.proxyRss, unit: 'MB' },
    ...(restarts.length ? [{ name: 'proxy SIGKILL to ready again (median)', value: median(restarts), unit: 'ms', detail: { samples: restarts, p99: percentile(sorted(restarts), 99) } }] : []),
  ]);
}

try {
  await main();
} finally {
  for (const fn of teardowns.reverse()) await fn();
}
