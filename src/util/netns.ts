import { execa } from 'execa';
import { readdirSync, readFileSync } from 'node:fs';

/** A minimal environment for programs started in a namespace (no loader hooks, no MESH_HARNESS_*). */
export function minimalEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };
}

/** PIDs of the processes running in a network namespace (none when it does not exist). */
export async function netnsPids(name: string): Promise<number[]> {
  const pids = await execa('ip', ['netns', 'pids', name], { reject: false, env: minimalEnv(), extendEnv: false });
  return String(pids.stdout).split('\n').filter(Boolean).map(Number);
}

/** Kills whatever still runs in a network namespace, then removes it; safe when it is gone. */
export async function removeNetns(name: string): Promise<void> {
  for (const pid of await netnsPids(name)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await execa('ip', ['netns', 'del', name], { reject: false, env: minimalEnv(), extendEnv: false });
}

/** Names of the network namespaces whose name starts with `prefix`. */
export async function listNetns(prefix: string): Promise<string[]> {
  const list = await execa('ip', ['netns', 'list'], { reject: false, env: minimalEnv(), extendEnv: false });
  return String(list.stdout)
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(prefix));
}

/** PIDs of processes (other than this one) whose command line contains `text`, such as a run directory. */
export function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** When a process started (clock ticks since boot), to tell it from a later one with the same PID. */
export function processStartTime(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[19];
  } catch {
    return undefined;
  }
}
