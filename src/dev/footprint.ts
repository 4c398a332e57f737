/**
 * Everything one playground run puts on the host, named so that it can always be found
 * again: a directory `<tmp>/<prefix>-<id>` holding an owner record, network namespaces
 * `<prefix>-<role>-<id>`, and processes that are either inside those namespaces or name
 * the directory on their command line. A run removes its own footprint on every way out;
 * a run that was SIGKILLed cannot, so the next run sweeps footprints whose owner is gone.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listNetns, netnsPids, processesMentioning, removeNetns } from '../util/netns.ts';
import { ownerAlive, readOwner, recordOwner } from '../util/owner.ts';

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** A namespace this young with nothing in it yet may be a run that is still setting up. */
const SETUP_GRACE_MS = 120_000;

function parentPid(pid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]);
  } catch {
    return undefined;
  }
}

function isDemoProcess(pid: number): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => a.includes('mesh-harness')) && argv.includes('demo');
  } catch {
    return false;
  }
}

/**
 * A namespace without an owner record may still belong to a running playground (one
 * started by an older version): it does when a process in it descends from a live
 * `mesh-harness demo`, or when it is empty and was created moments ago.
 */
async function inUseByLiveRun(ns: string): Promise<boolean> {
  const pids = await netnsPids(ns);
  if (pids.length === 0) {
    try {
      return Date.now() - statSync(`/run/netns/${ns}`).mtimeMs < SETUP_GRACE_MS;
    } catch {
      return false;
    }
  }
  for (const pid of pids) {
    for (let p: number | undefined = pid, hops = 0; p && p > 1 && hops < 64; p = parentPid(p), hops++) {
      if (isDemoProcess(p)) return true;
    }
  }
  return false;
}

export class Footprint {
  readonly id = randomBytes(3).toString('hex');
  readonly dir: string;

  /** Creates the run directory (mode 0755: children running as other users read from it) and records this process as its owner. */
  constructor(readonly prefix: string) {
    this.dir = join(tmpdir(), `${prefix}-${this.id}`);
    mkdirSync(this.dir, { mode: 0o755 });
    chmodSync(this.dir, 0o755);
    recordOwner(this.dir);
  }

  /** The name of this run's namespace for `role` ("vm", "client", ...). */
  namespace(role: string): string {
    return `${this.prefix}-${role}-${this.id}`;
  }

  /** Removes the namespaces (with what runs in them), the processes naming the directory, and the directory. */
  async remove(): Promise<void> {
    for (const ns of await listNetns(`${this.prefix}-`)) if (ns.endsWith(`-${this.id}`)) await removeNetns(ns);
    killAll(processesMentioning(this.dir));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Removes what earlier runs with this prefix left behind when they could not clean up
 * (SIGKILL, a crash, a power cut): directories whose owner is no longer running, with
 * the processes naming them, and namespaces that belong to no running run. Returns one
 * line per thing removed, for the user.
 */
export async function sweepAbandoned(prefix: string): Promise<string[]> {
  const removed: string[] = [];
  const liveIds = new Set<string>();
  const deadIds = new Set<string>();
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(`${prefix}-`)) continue;
    const dir = join(tmpdir(), name);
    const owner = readOwner(dir);
    if (!owner) continue;
    if (ownerAlive(owner)) {
      liveIds.add(name.slice(prefix.length + 1));
      continue;
    }
    deadIds.add(name.slice(prefix.length + 1));
    const pids = processesMentioning(dir);
    killAll(pids);
    rmSync(dir, { recursive: true, force: true });
    removed.push(`directory ${dir}${pids.length ? ` and process${pids.length > 1 ? 'es' : ''} ${pids.join(', ')}` : ''} (its run, pid ${owner.pid}, is gone)`);
  }
  for (const ns of await listNetns(`${prefix}-`)) {
    const id = ns.slice(ns.lastIndexOf('-') + 1);
    if (!deadIds.has(id) && (liveIds.has(id) || (await inUseByLiveRun(ns)))) continue;
    await removeNetns(ns);
    removed.push(`network namespace ${ns} and everything running in it`);
  }
  return removed;
}
