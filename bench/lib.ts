import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchRow {
  /** What was measured, e.g. "apply default ruleset". */
  name: string;
  value: number;
  unit: string;
  /** Optional extra facts (samples, percentiles, environment). */
  detail?: Record<string, unknown>;
}

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');

/** Writes bench/results/<suite>.json and prints a short table. */
export function writeResults(suite: string, rows: BenchRow[]): void {
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${suite}.json`);
  writeFileSync(file, `${JSON.stringify({ suite, measuredAt: new Date().toISOString(), node: process.versions.node, rows }, null, 2)}\n`);
  const width = Math.max(...rows.map((r) => r.name.length), 10);
  process.stdout.write(`\n${suite}\n`);
  for (const r of rows) process.stdout.write(`  ${r.name.padEnd(width)}  ${formatValue(r.value)} ${r.unit}\n`);
  process.stdout.write(`  -> ${file}\n`);
}

function formatValue(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 3 : 1);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)]!;
}

export function median(values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** Resident set size of a process in MB, from /proc. */
export function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line?.replace(/\D+/g, '') ?? 0) / 1024;
}

/** A process's memory in MB from /proc/PID/status: private (RssAnon), file-backed (RssFile) and the total (VmRSS). */
export function memoryMb(pid: number): { rssAnon: number; rssFile: number; vmRss: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) / 1024;
  return { rssAnon: field('RssAnon'), rssFile: field('RssFile'), vmRss: field('VmRSS') };
}

function statFields(pid: number | 'self'): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The live descendants of `pid` (children, their children, ...), from /proc. */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(statFields(Number(entry))[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // Gone while listing.
    }
  }
  const found: number[] = [];
  for (let queue = [pid]; queue.length; ) {
    const next = parents.get(queue.shift()!) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}

/**
 * CPU seconds of a process and everything it started: utime + stime of it and of its live
 * descendants (a long-lived helper such as the probe runner), plus what each of them
 * reaped (short-lived helpers such as exec probes). Compare two readings of one tree.
 */
export function treeCpuSeconds(pid: number | 'self'): number {
  const root = pid === 'self' ? process.pid : pid;
  let ticks = 0;
  for (const member of [root, ...descendants(root)]) {
    try {
      const fields = statFields(member);
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    } catch {
      // Exited since the listing; its time is in its parent's reaped-children share.
    }
  }
  return ticks / 100;
}
