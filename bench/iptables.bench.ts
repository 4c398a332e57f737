/**
 * iptables, measured in a network namespace this benchmark creates and removes:
 * - apply time (install on an empty table, both families) for the default ruleset and for
 *   one with 200 ignored inbound ports and 50 ignored subnets per family;
 * - drift-repair latency of the running IptablesComponent: from the moment a foreign
 *   `iptables` command that broke the rules has exited to the moment the repair is
 *   verified, over 100 injected drifts (nft backend, change events) and over 30 on the
 *   legacy backend (1 s poll);
 * - CPU used by the reconciler at steady state, measured over a quiet window and
 *   extrapolated to an hour: the harness process, the iptables programs it runs and its
 *   nft monitor child.
 *
 * node --import tsx bench/iptables.bench.ts   (as root)
 */
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { Registry, type Counter } from 'prom-client';
import { loadConfig } from '../src/config/load.ts';
import { findTools, type BackendMode } from '../src/iptables/backend.ts';
import { IptablesComponent } from '../src/iptables/component.ts';
import { desiredRulesets, resolveRenderInput } from '../src/iptables/desired.ts';
import { NatTable } from '../src/iptables/nat-table.ts';
import type { Family } from '../src/iptables/ruleset.ts';
import { silentLogger } from '../src/log/logger.ts';
import { createNetns, destroyNetns, type Netns } from '../test/helpers/netns.ts';
import { median, percentile, writeResults, type BenchRow } from './lib.ts';

const cleanups: Array<() => unknown> = [];
const scope = { teardown: (fn: () => unknown) => cleanups.push(fn) };
const namespaces: string[] = [];
process.on('SIGINT', () => {
  void Promise.all(namespaces.map(destroyNetns)).finally(() => process.exit(130));
});

const BASE_SETS = ['proxy.user=nobody', 'proxy.group=nogroup'];
const LARGE_SETS = [
  `iptables.ignoreInboundPorts=${Array.from({ length: 200 }, (_, i) => 10_000 + i * 3).join(',')}`,
  `iptables.ignoreOutboundSubnets=${[...Array.from({ length: 50 }, (_, i) => `100.${64 + i}.0.0/16`), ...Array.from({ length: 50 }, (_, i) => `fd00:${(i + 1).toString(16)}::/32`)].join(',')}`,
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function config(sets: string[]) {
  return loadConfig({ path: null, env: {}, sets: [...BASE_SETS, ...sets] }).config;
}

async function namespace(label: string): Promise<Netns> {
  const ns = await createNetns(scope, label);
  namespaces.push(ns.name);
  return ns;
}

function stats(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { samples: samples.length, median: median(samples), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] };
}

async function applyTime(label: string, sets: string[], runs: number): Promise<BenchRow> {
  const ns = await namespace(`bench-apply-${label}`);
  const families: Family[] = ['ipv4', 'ipv6'];
  const desired = desiredRulesets(await resolveRenderInput(config(sets)), families);
  const tables = await Promise.all(families.map(async (f) => new NatTable(ns.runner, (await findTools(ns.runner, 'nft', f))!)));
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    for (const table of tables) await table.converge(undefined);
    const start = performance.now();
    for (const table of tables) await table.converge(desired.get(table.family));
    samples.push(performance.now() - start);
  }
  const s = stats(samples);
  const rules = [...desired.values()].reduce((n, r) => n + r.rules.length + r.jumps.length, 0);
  return { name: `apply ${label} ruleset (IPv4+IPv6, nft)`, value: s.median, unit: 'ms', detail: { ...s, rules, includes: 'look, one iptables-restore transaction, verifying look; per family' } };
}

async function repairsOf(registry: Registry): Promise<number> {
  const counter = registry.getSingleMetric('mesh_harness_iptables_drift_repairs_total') as Counter | undefined;
  return (await counter?.get())?.values.reduce((sum, v) => sum + v.value, 0) ?? 0;
}

const JUMP_IN = ['-p', 'tcp', '-m', 'comment', '--comment', 'mesh-harness: inbound TCP through the proxy', '-j', 'MESH_HARNESS_INBOUND'];
const JUMP_OUT = ['-p', 'tcp', '-m', 'comment', '--comment', 'mesh-harness: outbound TCP through the proxy', '-j', 'MESH_HARNESS_OUTBOUND'];
const DRIFTS: string[][] = [
  ['-F', 'MESH_HARNESS_OUTBOUND'],
  ['-D', 'PREROUTING', ...JUMP_IN],
  ['-A', 'OUTPUT', ...JUMP_OUT],
  ['-I', 'MESH_HARNESS_INBOUND', '1', '-p', 'tcp', '-j', 'RETURN'],
];

async function repairLatency(mode: BackendMode, drifts: number): Promise<BenchRow> {
  const ns = await namespace(`bench-drift-${mode}`);
  const registry = new Registry();
  const component = new IptablesComponent({ config: config([`iptables.backend=${mode}`, 'iptables.ipv6=off']), log: silentLogger(), registry, runner: ns.runner });
  cleanups.push(() => component.stop());
  await component.start();
  // The jumps too, as in the daemon once the proxy has answered ready.
  await component.enableRedirect();
  const samples: number[] = [];
  for (let i = 0; i < drifts; i++) {
    const before = await repairsOf(registry);
    await ns.exec([`iptables-${mode}`, '-t', 'nat', ...DRIFTS[i % DRIFTS.length]!]);
    const injected = performance.now();
    while ((await repairsOf(registry)) === before) {
      if (performance.now() - injected > 10_000) throw new Error(`drift ${i} not repaired within 10 s`);
      await sleep(1);
    }
    samples.push(performance.now() - injected);
    // Spaced so the reconciler's guard against a fighting program (more than 20 repairs in
    // 10 s) never engages: this measures isolated drifts.
    await sleep(600);
  }
  await component.stop();
  const s = stats(samples);
  return { name: `drift repair latency, ${mode} (${mode === 'nft' ? 'change events' : '1 s poll'}), median`, value: s.median, unit: 'ms', detail: s };
}

/** utime + stime of a process, or of its reaped children, in seconds. */
function cpuSeconds(pid: number | 'self', children = false): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const [u, s] = children ? [fields[13], fields[14]] : [fields[11], fields[12]];
  return (Number(u) + Number(s)) / 100;
}

async function steadyCpu(mode: BackendMode, windowMs: number): Promise<BenchRow> {
  const ns = await namespace(`bench-cpu-${mode}`);
  const component = new IptablesComponent({ config: config([`iptables.backend=${mode}`]), log: silentLogger(), registry: new Registry(), runner: ns.runner });
  cleanups.push(() => component.stop());
  await component.start();
  await component.enableRedirect();
  await sleep(2000);
  const pids = String((await execa('ip', ['netns', 'pids', ns.name])).stdout).split('\n').filter(Boolean).map(Number);
  const cpu = () => cpuSeconds('self') + cpuSeconds('self', true) + pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const start = cpu();
  await sleep(windowMs);
  const used = cpu() - start;
  await component.stop();
  const perHour = used * (3_600_000 / windowMs);
  return {
    name: `reconciler CPU at steady state, ${mode} (${mode === 'nft' ? 'events + 30 s resync' : '1 s poll'}), per hour`,
    value: perHour,
    unit: 'CPU s/h',
    detail: { windowSeconds: windowMs / 1000, cpuSecondsInWindow: used, percentOfOneCore: (perHour / 3600) * 100, longLivedChildren: pids.length, families: ['ipv4', 'ipv6'] },
  };
}

try {
  const rows: BenchRow[] = [];
  rows.push(await applyTime('default', [], 30));
  rows.push(await applyTime('large', LARGE_SETS, 30));
  rows.push(await repairLatency('nft', 100));
  rows.push(await repairLatency('legacy', 30));
  rows.push(await steadyCpu('nft', 60_000));
  rows.push(await steadyCpu('legacy', 60_000));
  writeResults('iptables', rows);
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup();
}
