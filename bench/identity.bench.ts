/**
 * Identity benchmarks:
 * - socket up -> SVID validated: how long after the Workload API socket appears the
 *   harness holds a verified SVID (development server; real SPIRE for a new agent and for
 *   a restarted one, where SPIRE's own sync dominates; and the harness alone, connecting
 *   to an agent that already serves);
 * - CPU and memory of the identity component per rotation over 1000 rotations pushed by
 *   the development server running in another process (so its signing is not counted).
 *
 * Run with --expose-gc (npm run bench does) for exact heap numbers.
 */
import { execa } from 'execa';
import { existsSync, mkdtempSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { loadConfig } from '../src/config/load.ts';
import { DevCa } from '../src/dev/ca.ts';
import { DevWorkloadApiServer } from '../src/dev/workload-api/server.ts';
import { IdentityComponent } from '../src/identity/component.ts';
import { silentLogger } from '../src/log/logger.ts';
import { spireAvailable, SpireServer } from '../test/helpers/spire.ts';
import { median, percentile, writeResults, type BenchRow } from './lib.ts';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const TD = 'root.linkerd.cluster.local';
const gc = (globalThis as { gc?: () => void }).gc;

function identityOn(dir: string, socketPath: string, spiffeId: string, anchorsFile: string): IdentityComponent {
  const { config } = loadConfig({
    defaultPath: join(dir, 'absent.json'),
    env: {},
    sets: [`identity.spiffeId=${spiffeId}`, `identity.trustAnchorsFile=${anchorsFile}`, `identity.workloadApiSocket=unix://${socketPath}`, 'identity.expiryMargin=1s'],
  });
  return new IdentityComponent({ config, log: silentLogger(), registry: new Registry() });
}

/** Resolves with the time the file at `path` appears (fs.watch on its directory). */
function whenCreated(path: string): Promise<number> {
  return new Promise((resolve) => {
    const watcher = watch(join(path, '..'), () => {
      if (!existsSync(path)) return;
      watcher.close();
      resolve(performance.now());
    });
  });
}

function summary(name: string, samples: number[], detail: Record<string, unknown> = {}): BenchRow {
  const sorted = [...samples].sort((a, b) => a - b);
  return { name, value: Math.round(median(samples) * 10) / 10, unit: 'ms', detail: { samples: samples.length, p90: percentile(sorted, 90), max: sorted[sorted.length - 1], ...detail } };
}

async function devSocketToSvid(samples: number): Promise<BenchRow> {
  const ca = await DevCa.create({ trustDomain: TD });
  const spiffeId = `spiffe://${TD}/vm/bench`;
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'mh-bench-'));
    const anchorsFile = join(dir, 'anchors.pem');
    writeFileSync(anchorsFile, ca.bundlePem);
    const socketPath = join(dir, 'api.sock');
    const identity = identityOn(dir, socketPath, spiffeId, anchorsFile);
    await identity.start();
    // Let the first attempts fail and the client settle into its backoff, as when an agent is down.
    await new Promise((r) => setTimeout(r, 300));
    const server = new DevWorkloadApiServer({ socketPath, ca, identities: [{ spiffeId }], ttlMs: 60_000, log: silentLogger() });
    const up = whenCreated(socketPath);
    const validated = identity.waitForSvid().then(() => performance.now());
    await server.start();
    times.push((await validated) - (await up));
    await identity.stop();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return summary('dev server: socket up -> SVID validated', times);
}

async function spireSocketToSvid(samples: number): Promise<BenchRow[]> {
  const teardowns: Array<() => unknown> = [];
  const server = await SpireServer.start({ teardown: (fn) => teardowns.push(fn) });
  const cold: number[] = [];
  const restart: number[] = [];
  const connect: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const agent = await server.newAgent(`b${i}`);
      const spiffeId = `spiffe://${TD}/vm/bench-${i}`;
      await server.createEntry({ parentId: agent.spiffeId, spiffeId, selector: `unix:gid:${process.getgid!()}`, x509SvidTtl: 60 });
      const dir = mkdtempSync(join(tmpdir(), 'mh-bench-'));
      const identity = identityOn(dir, agent.socketPath, spiffeId, server.anchorsFile);
      await identity.start();
      await new Promise((r) => setTimeout(r, 300));

      let up = whenCreated(agent.socketPath);
      let validated = identity.waitForSvid().then(() => performance.now());
      await agent.restart();
      cold.push((await validated) - (await up));

      await agent.kill();
      while (identity.state().ready) await new Promise((r) => setTimeout(r, 10));
      rmSync(agent.socketPath, { force: true });
      up = whenCreated(agent.socketPath);
      validated = new Promise((resolve) => identity.once('svid', () => resolve(performance.now())));
      await agent.restart();
      restart.push((await validated) - (await up));
      await identity.stop();

      // The harness alone: the agent already serves, the component starts.
      const again = identityOn(dir, agent.socketPath, spiffeId, server.anchorsFile);
      const started = performance.now();
      await again.start();
      await again.waitForSvid();
      connect.push(performance.now() - started);
      await again.stop();
      await agent.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    for (const fn of teardowns.reverse()) await fn();
  }
  return [
    summary('spire: new agent socket up -> SVID validated', cold, { note: 'dominated by the agent fetching its entries from the server (sync period 5 s)' }),
    summary('spire: restarted agent socket up -> SVID validated', restart),
    summary('spire: component start -> SVID validated (agent already serving)', connect),
  ];
}

async function rotations(count: number): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'mh-bench-'));
  const socketPath = join(dir, 'api.sock');
  const anchorsFile = join(dir, 'anchors.pem');
  const spiffeId = `spiffe://${TD}/vm/rotate`;
  const server = execa(process.execPath, ['--import', 'tsx', join(root, 'src/dev/workload-api/main.ts'), '--socket', socketPath, '--spiffe-id', spiffeId, '--ttl', '1m', '--rotate-every', '5ms', '--trust-anchors-out', anchorsFile, '--log-level', 'warn'], {
    cwd: root,
    reject: false,
  });
  try {
    while (!existsSync(socketPath)) await new Promise((r) => setTimeout(r, 20));
    const identity = identityOn(dir, socketPath, spiffeId, anchorsFile);
    let seen = 0;
    let mark: (() => void) | undefined;
    let target = 0;
    identity.on('svid', () => {
      seen += 1;
      if (seen === target) mark?.();
    });
    const reach = (n: number): Promise<void> =>
      new Promise((resolve) => {
        target = n;
        mark = resolve;
        if (seen >= n) resolve();
      });
    await identity.start();
    const warmup = 100;
    await reach(warmup);
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const rssBefore = process.memoryUsage().rss;
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await reach(warmup + count / 2);
    gc?.();
    // A leak grows with the count: the second half must not add what the first half did.
    const heapMid = process.memoryUsage().heapUsed;
    await reach(warmup + count);
    const elapsedMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    gc?.();
    const heapAfter = process.memoryUsage().heapUsed;
    const rssAfter = process.memoryUsage().rss;
    await identity.stop();
    const cpuUsPerRotation = (cpu.user + cpu.system) / count;
    return [
      { name: `component CPU per rotation (${count} rotations)`, value: Math.round(cpuUsPerRotation) / 1000, unit: 'ms', detail: { userUs: cpu.user, systemUs: cpu.system, elapsedMs: Math.round(elapsedMs) } },
      { name: `heap growth over ${count} rotations`, value: Math.round((heapAfter - heapBefore) / 1024), unit: 'KiB', detail: { heapBeforeKiB: Math.round(heapBefore / 1024), heapMidKiB: Math.round(heapMid / 1024), heapAfterKiB: Math.round(heapAfter / 1024), exactGc: Boolean(gc) } },
      { name: `RSS growth over ${count} rotations`, value: Math.round((rssAfter - rssBefore) / 1024), unit: 'KiB', detail: { rssBeforeMiB: Math.round(rssBefore / 1048576), rssAfterMiB: Math.round(rssAfter / 1048576) } },
    ];
  } finally {
    server.kill('SIGTERM');
    await server;
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: BenchRow[] = [];
rows.push(await devSocketToSvid(20));
rows.push(...(await rotations(1000)));
if (spireAvailable()) rows.push(...(await spireSocketToSvid(3)));
else process.stdout.write('spire-server/spire-agent not on PATH: real SPIRE rows skipped (scripts/install-spire.sh)\n');
writeResults('identity', rows);
