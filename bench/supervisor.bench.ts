/**
 * Restart latency after a crash: the time from SIGKILL of a supervised child to its
 * replacement being spawned and being ready again.
 * - a small node fixture (readiness = it wrote its PID to a file), 30 crashes;
 * - the development proxy under the ProxyComponent with the real identity component and
 *   the development Workload API (readiness = its admin /ready, which needs the SVID
 *   fetched and validated), 15 crashes.
 * The restart backoff base is 10 ms (with half jitter) so the numbers show the supervisor
 * and the child start-up, not the production backoff (500 ms base).
 *
 * node --import tsx bench/supervisor.bench.ts   (as root: the proxy runs as nobody)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import type { ComponentState } from '../src/component/component.ts';
import { IdentityComponent } from '../src/identity/component.ts';
import { silentLogger } from '../src/log/logger.ts';
import { ProxyComponent } from '../src/proxy/component.ts';
import { ChildSupervisor } from '../src/supervisor/supervisor.ts';
import { tempDir } from '../test/helpers/tmp.ts';
import { buildDevProxy } from '../test/integration/proxy/dev-proxy-bin.ts';
import { proxyConfig, SPIFFE_ID, workloadApi } from '../test/integration/proxy/helpers.ts';
import { median, percentile, writeResults, type BenchRow } from './lib.ts';

const cleanups: Array<() => unknown> = [];
const scope = { teardown: (fn: () => unknown) => void cleanups.push(fn) };
const BACKOFF = { baseMs: 10, maxMs: 1000 };

function until(component: { state(): ComponentState; on(e: 'change', l: (s: ComponentState) => void): unknown; off(e: 'change', l: (s: ComponentState) => void): unknown }, test: (s: ComponentState) => boolean): Promise<void> {
  if (test(component.state())) return Promise.resolve();
  return new Promise((resolve) => {
    const listener = (s: ComponentState) => {
      if (!test(s)) return;
      component.off('change', listener);
      resolve();
    };
    component.on('change', listener);
  });
}

function rows(label: string, samples: number[], extra: Record<string, unknown>): BenchRow[] {
  const sorted = [...samples].sort((a, b) => a - b);
  const detail = { samples: samples.length, max: sorted.at(-1), backoffBaseMs: BACKOFF.baseMs, ...extra };
  return [
    { name: `${label} median`, value: Number(median(samples).toFixed(1)), unit: 'ms', detail },
    { name: `${label} p99`, value: Number(percentile(sorted, 99).toFixed(1)), unit: 'ms', detail },
  ];
}

async function fixtureRestarts(crashes: number): Promise<BenchRow[]> {
  const dir = tempDir(scope, 'mh-bench-');
  const readyFile = join(dir, 'ready');
  const fixture = fileURLToPath(new URL('../test/fixtures/supervisor-child.mjs', import.meta.url));
  const supervisor: ChildSupervisor = new ChildSupervisor({
    spec: { name: 'bench-child', command: process.execPath, args: [fixture, 'serve'], env: { READY_FILE: readyFile }, stopGraceMs: 2000 },
    log: silentLogger(),
    registry: new Registry(),
    isReady: async () => {
      try {
        return readFileSync(readyFile, 'utf8') === String(supervisor.pid());
      } catch {
        return false;
      }
    },
    readyPollMs: 5,
    backoff: BACKOFF,
    stableAfterMs: 1,
    crashLoopThreshold: 1000,
  });
  scope.teardown(() => supervisor.stop());
  await supervisor.start();
  const respawned: number[] = [];
  const ready: number[] = [];
  for (let i = 0; i < crashes; i++) {
    await until(supervisor, (s) => s.phase === 'Ready');
    const victim = supervisor.pid()!;
    writeFileSync(readyFile, '');
    const spawn = new Promise<number>((resolve) => supervisor.once('spawn', () => resolve(performance.now())));
    const start = performance.now();
    process.kill(victim, 'SIGKILL');
    await until(supervisor, (s) => s.phase !== 'Ready');
    respawned.push((await spawn) - start);
    await until(supervisor, (s) => s.phase === 'Ready' && supervisor.pid() !== victim);
    ready.push(performance.now() - start);
  }
  await supervisor.stop();
  return [...rows('node fixture: SIGKILL -> new child spawned', respawned, {}), ...rows('node fixture: SIGKILL -> new child ready', ready, { readyPollMs: 5 })];
}

async function devProxyRestarts(crashes: number): Promise<BenchRow[]> {
  const { executable } = await buildDevProxy(scope);
  const api = await workloadApi(scope, [{ spiffeId: SPIFFE_ID }]);
  const anchorsFile = join(api.dir, 'trust-anchors.pem');
  writeFileSync(anchorsFile, api.ca.bundlePem, { mode: 0o644 });
  const config = await proxyConfig(scope, {
    socketPath: api.socketPath,
    extra: { identity: { trustAnchorsFile: anchorsFile }, proxy: { binary: executable, user: 'nobody', group: 'nogroup' } },
  });
  const registry = new Registry();
  const identity = new IdentityComponent({ config, log: silentLogger(), registry });
  const proxy = new ProxyComponent({
    config,
    log: silentLogger(),
    registry,
    identity,
    workloadName: () => 'bench',
    trustAnchorsPem: () => api.ca.bundlePem,
    supervision: { backoff: BACKOFF, readyPollMs: 10, stableAfterMs: 1, crashLoopThreshold: 1000 },
  });
  scope.teardown(async () => {
    await proxy.stop();
    await identity.stop();
  });
  await identity.start();
  await proxy.start();
  const ready: number[] = [];
  for (let i = 0; i < crashes; i++) {
    await until(proxy, (s) => s.phase === 'Ready');
    const victim = proxy.pid()!;
    const start = performance.now();
    process.kill(victim, 'SIGKILL');
    await until(proxy, (s) => s.phase !== 'Ready');
    await until(proxy, (s) => s.phase === 'Ready' && proxy.pid() !== victim);
    ready.push(performance.now() - start);
  }
  return rows('dev proxy: SIGKILL -> ready again (SVID fetched and verified)', ready, { readyPollMs: 10 });
}

try {
  const results = [...(await fixtureRestarts(30)), ...(await devProxyRestarts(15))];
  writeResults('supervisor', results);
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup();
}
