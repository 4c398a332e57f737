/**
 * Workload probes:
 * - the harness daemon's CPU (with every process it starts) with 10 probes at a 1 s period (4 httpGet, 3 tcpSocket, 2
 *   grpc, 1 exec), against the same daemon with no probes; the targets run in this
 *   process, so their CPU is not counted;
 * - detection latency: failure injected at a random moment -> readiness transition
 *   emitted by the probes component (periodSeconds 1, failureThreshold 1), median and p99.
 *   Its floor is the wait for the next check, uniform over one period;
 * - the same, up to Ready=False on the ExternalWorkload in a real kube-apiserver (probes ->
 *   registration -> mesh-registrar -> API server; polled every 20 ms), when kube-apiserver,
 *   etcd and kubectl are on PATH.
 */
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { loadConfig } from '../src/config/load.ts';
import { DevCa } from '../src/dev/ca.ts';
import { silentLogger } from '../src/log/logger.ts';
import { ProbesComponent } from '../src/probes/component.ts';
import type { Readiness } from '../src/probes/readiness.ts';
import { workloadName } from '../src/protocol/workload-name.ts';
import type { ExternalWorkload } from '../src/registrar/store.ts';
import { KubeCluster, kubeAvailable } from '../test/helpers/kube.ts';
import { startProbedHarness } from '../test/helpers/probed-harness.ts';
import { groupManifest, makePki, REGISTRAR_ID, ReplicaProcess, TRUST_DOMAIN } from '../test/helpers/registrar.ts';
import { freePort, waitFor } from '../test/helpers/tmp.ts';
import { grpcHealthServer, httpWorkload, TcpWorkload } from '../test/helpers/workloads.ts';
import { descendants, median, memoryMb, percentile, rssMb, treeCpuSeconds, writeResults } from './lib.ts';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' };
const teardowns: Array<() => unknown> = [];
const t = { teardown: (fn: () => unknown) => teardowns.push(fn) };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** RSS of a process and its live descendants (the probe runner), in MB. */
function treeRssMb(pid: number): number {
  return [pid, ...descendants(pid)].reduce((sum, member) => {
    try {
      return sum + rssMb(member);
    } catch {
      return sum;
    }
  }, 0);
}

/**
 * The daemon (no SVID: identity waits, the proxy is never started) with `probes`; CPU over a
 * window, of the daemon and every process it started (exec probes, the probe runner).
 */
async function daemonCpu(dir: string, probes: unknown[], windowMs: number): Promise<{ cpuPerHour: number; rssMb: number; runner?: { rssAnon: number; rssFile: number } }> {
  const adminPort = await freePort();
  const config = join(dir, `config-${probes.length}.json`);
  // run checks the host first: the anchors file and the proxy binary must exist (the proxy never starts: no SVID).
  writeFileSync(`${dir}/anchors.pem`, (await DevCa.create({ trustDomain: 'root.linkerd.cluster.local' })).bundlePem);
  writeFileSync(config, JSON.stringify({
    workload: { group: 'bench', namespace: 'default' },
    identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/bench', serverName: 'bench.vm.cluster.local', workloadApiSocket: `unix://${dir}/none.sock`, trustAnchorsFile: `${dir}/anchors.pem` },
    proxy: { destinationAddr: '127.0.0.1:8086', user: 'meshproxy', group: 'meshproxy', binary: '/bin/true' },
    iptables: { enabled: false },
    probes: { workload: probes },
    admin: { port: adminPort },
    log: { format: 'json', level: 'warn' },
  }));
  const child = execa(process.execPath, [join(root, 'bin', 'mesh-harness.mjs'), 'run', '--config', config], { env, extendEnv: false, reject: false, buffer: false, stdout: 'ignore', stderr: 'ignore' });
  try {
    await sleep(5000);
    const cpu0 = treeCpuSeconds(child.pid!);
    await sleep(windowMs);
    const cpu = treeCpuSeconds(child.pid!) - cpu0;
    const runner = descendants(child.pid!).find((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('probe-runner.js');
      } catch {
        return false;
      }
    });
    const runnerMemory = runner === undefined ? undefined : memoryMb(runner);
    return { cpuPerHour: (cpu * 3_600_000) / windowMs, rssMb: treeRssMb(child.pid!), ...(runnerMemory ? { runner: { rssAnon: runnerMemory.rssAnon, rssFile: runnerMemory.rssFile } } : {}) };
  } finally {
    child.kill('SIGTERM');
    await child;
  }
}

async function detectionLatency(samples: number): Promise<number[]> {
  const web = await httpWorkload(t);
  const dir = mkdtempSync(join(tmpdir(), 'mh-probes-bench-'));
  teardowns.push(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify({ probes: { workload: [{ name: 'web', httpGet: { port: web.port, path: '/healthz' }, periodSeconds: 1, failureThreshold: 1 }] } }));
  const { config } = loadConfig({ path, env: {} });
  // No flap damping: every sample is a deliberate flap, and the hold would measure the damping instead.
  const probes = new ProbesComponent({ config, log: silentLogger(), registry: new Registry(), damping: { holdBaseMs: 1, holdMaxMs: 1, quietMs: 1 } });
  const waitFor = (ready: boolean) => new Promise<number>((resolve) => {
    const listener = (r: Readiness) => {
      if (r.ready !== ready) return;
      probes.off('readiness', listener);
      resolve(performance.now());
    };
    probes.on('readiness', listener);
  });
  let ready = waitFor(true);
  await probes.start();
  await ready;
  const latencies: number[] = [];
  for (let i = 0; i < samples; i++) {
    await sleep(Math.random() * 1000);
    const down = waitFor(false);
    const injected = performance.now();
    web.status = 503;
    latencies.push((await down) - injected);
    ready = waitFor(true);
    web.status = 200;
    await ready;
  }
  await probes.stop();
  return latencies;
}

/**
 * CPU of 10 probes of one kind at 1 s, in this process and the processes it starts (so the
 * target's side of each check is counted too: an upper bound of the probing side's share).
 */
async function handlerCost(dir: string, probe: Record<string, unknown>, windowMs: number): Promise<number> {
  const path = join(dir, 'handler.json');
  writeFileSync(path, JSON.stringify({ probes: { workload: Array.from({ length: 10 }, (_, i) => ({ name: `p${i}`, ...probe, periodSeconds: 1 })) } }));
  const { config } = loadConfig({ path, env: {} });
  const probes = new ProbesComponent({ config, log: silentLogger(), registry: new Registry() });
  await probes.start();
  await sleep(2000);
  const before = treeCpuSeconds('self');
  await sleep(windowMs);
  const used = treeCpuSeconds('self') - before;
  await probes.stop();
  return used * (3_600_000 / windowMs);
}

/** Failure injected -> Ready=False on the ExternalWorkload in the API server. */
async function apiServerLatency(samples: number): Promise<number[]> {
  const cluster = await KubeCluster.start(t);
  const pki = await makePki(t);
  const ns = 'mh-probes-bench';
  const vmId = `spiffe://${TRUST_DOMAIN}/vm/bench`;
  await cluster.kubectl(['create', 'namespace', ns]);
  const web = await httpWorkload(t);
  await cluster.kubectl(['apply', '-f', '-'], { input: groupManifest({ name: 'web', namespace: ns, allowedIdentities: [vmId], probes: [{ name: 'web', httpGet: { port: web.port, path: '/healthz' }, periodSeconds: 1, failureThreshold: 1 }] }) });
  const replica = await ReplicaProcess.start(t, { replica: 'reg-bench', pki, kubeconfig: cluster.registrarKubeconfig });
  const dir = mkdtempSync(join(tmpdir(), 'mh-probes-bench-'));
  teardowns.push(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'registered.json');
  writeFileSync(path, JSON.stringify({
    workload: { group: 'web', namespace: ns, nodeName: 'vm-bench', ips: ['192.0.2.10'] },
    identity: { spiffeId: vmId, serverName: 'vm-bench.vm.example', trustAnchorsFile: pki.anchorsFile },
    control: { registrarAddress: replica.grpcAddress, registrarIdentity: REGISTRAR_ID, heartbeatInterval: '1s' },
  }));
  const { config } = loadConfig({ path, env: {} });
  await startProbedHarness(t, { pki, config, damping: { holdBaseMs: 1, holdMaxMs: 1, quietMs: 1 } });
  const name = workloadName({ namespace: ns, group: 'web', nodeName: 'vm-bench', spiffeId: vmId });
  const ready = async (status: 'True' | 'False') => waitFor(`Ready=${status}`, async () => {
    const { status: code, body } = await cluster.request('GET', `/apis/workload.linkerd.io/v1beta1/namespaces/${ns}/externalworkloads/${name}`);
    if (code !== 200) return undefined;
    return (body as ExternalWorkload).status?.conditions?.find((c) => c.type === 'Ready' && c.status === status) ? performance.now() : undefined;
  }, 30_000, 20);
  await ready('True');
  const latencies: number[] = [];
  for (let i = 0; i < samples; i++) {
    await sleep(Math.random() * 1000);
    const injected = performance.now();
    web.status = 503;
    latencies.push((await ready('False')) - injected);
    web.status = 200;
    await ready('True');
  }
  return latencies;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mh-probes-bench-'));
  teardowns.push(() => rmSync(dir, { recursive: true, force: true }));
  const web = await httpWorkload(t);
  const db = await TcpWorkload.start(t);
  const grpc = await grpcHealthServer(t);
  const probes = [
    ...[0, 1, 2, 3].map((i) => ({ name: `http-${i}`, httpGet: { port: web.port, path: '/healthz' }, periodSeconds: 1 })),
    ...[0, 1, 2].map((i) => ({ name: `tcp-${i}`, tcpSocket: { port: db.port }, periodSeconds: 1 })),
    ...[0, 1].map((i) => ({ name: `grpc-${i}`, grpc: { port: grpc.port }, periodSeconds: 1 })),
    { name: 'exec-0', exec: { command: ['true'] }, periodSeconds: 1 },
  ];
  const windowMs = 30_000;
  const baseline = await daemonCpu(dir, [], windowMs);
  const loaded = await daemonCpu(dir, probes, windowMs);
  const httpChecks = web.served.get(200) ?? 0;

  const perHandler: Record<string, number> = {};
  for (const [kind, probe] of [['tcpSocket', { tcpSocket: { port: db.port } }], ['httpGet', { httpGet: { port: web.port } }], ['grpc', { grpc: { port: grpc.port } }], ['exec', { exec: { command: ['true'] } }]] as const) {
    perHandler[kind] = await handlerCost(dir, probe, 15_000);
  }

  const latencies = await detectionLatency(40);
  const sorted = [...latencies].sort((a, b) => a - b);
  const api = kubeAvailable() ? [...(await apiServerLatency(20))].sort((a, b) => a - b) : undefined;
  writeResults('probes', [
    { name: 'daemon CPU, no probes', value: baseline.cpuPerHour, unit: 'CPU-s/h', detail: { windowSeconds: windowMs / 1000, rssMb: baseline.rssMb } },
    { name: 'daemon CPU, 10 probes at 1 s', value: loaded.cpuPerHour, unit: 'CPU-s/h', detail: { windowSeconds: windowMs / 1000, rssMb: loaded.rssMb, mix: '4 httpGet, 3 tcpSocket, 2 grpc, 1 exec', httpChecksServed: httpChecks } },
    { name: '  cost of the 10 probes', value: loaded.cpuPerHour - baseline.cpuPerHour, unit: 'CPU-s/h', detail: { percentOfOneCore: ((loaded.cpuPerHour - baseline.cpuPerHour) / 3600) * 100 } },
    ...(loaded.runner
      ? [{ name: '  probe runner private memory (RssAnon)', value: loaded.runner.rssAnon, unit: 'MB', detail: { rssFileMb: loaded.runner.rssFile, note: 'file-backed pages are mostly the Node.js binary, shared with the harness' } }]
      : []),
    ...Object.entries(perHandler).map(([kind, cpu]) => ({ name: `  10 ${kind} probes at 1 s, incl. target`, value: cpu, unit: 'CPU-s/h', detail: { msPerCheck: cpu / 36 } })),
    { name: 'detection latency (median)', value: median(latencies), unit: 'ms', detail: { periodSeconds: 1, failureThreshold: 1, samples: sorted.map((v) => Math.round(v)) } },
    { name: 'detection latency (p99)', value: percentile(sorted, 99), unit: 'ms', detail: { note: 'failure injected at a random moment -> readiness transition emitted; floor is the wait for the next check (uniform over one period)' } },
    ...(api
      ? [
          { name: 'failure -> Ready=False on the API server (median)', value: median(api), unit: 'ms', detail: { periodSeconds: 1, failureThreshold: 1, pollMs: 20, samples: api.map((v) => Math.round(v)) } },
          { name: 'failure -> Ready=False on the API server (p99)', value: percentile(api, 99), unit: 'ms', detail: { note: 'probes -> registration stream -> mesh-registrar -> status write -> read back; includes up to 20 ms of polling' } },
        ]
      : [{ name: 'failure -> Ready=False on the API server', value: NaN, unit: 'ms', detail: { skipped: 'kube-apiserver, etcd or kubectl not on PATH' } }]),
  ]);
}

try {
  await main();
} finally {
  for (const fn of teardowns.reverse()) await fn();
}
