import { execa } from 'execa';

/** A minimal environment for programs started in a namespace (no loader hooks, no MESH_HARNESS_*). */
export function minimalEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };
}

/** Kills whatever still runs in a network namespace, then removes it; safe when it is gone. */
export async function removeNetns(name: string): Promise<void> {
  const pids = await execa('ip', ['netns', 'pids', name], { reject: false, env: minimalEnv(), extendEnv: false });
  for (const pid of String(pids.stdout).split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await execa('ip', ['netns', 'del', name], { reject: false, env: minimalEnv(), extendEnv: false });
}
