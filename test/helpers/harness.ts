/**
 * The built harness (`mesh-harness run`) as a process inside a test's network namespace,
 * with its JSON log lines collected; SIGKILLed at teardown if still running.
 */
import { execa, type ResultPromise } from 'execa';
import { createInterface } from 'node:readline';
import { harnessBin } from './cli.ts';
import { childEnv, type Netns } from './netns.ts';

export interface LogLine {
  time: string;
  level: number;
  component: string;
  msg: string;
  phase?: string;
  event?: string;
  pid?: number;
  [key: string]: unknown;
}

export interface RunningHarness {
  pid: number;
  child: ResultPromise;
  log: LogLine[];
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * `gid`: the primary group to run with, as the unit's Group=meshproxy gives the harness in
 * production (the redirect rules exempt that group's traffic); root's own when not given.
 */
export function startHarnessIn(t: { teardown(fn: () => unknown): void }, ns: Pick<Netns, 'name'>, configPath: string, notifySocket: string, options: { gid?: number } = {}): RunningHarness {
  const group = options.gid === undefined ? [] : ['setpriv', `--regid=${options.gid}`, '--clear-groups', '--'];
  const child = execa('ip', ['netns', 'exec', ns.name, ...group, process.execPath, harnessBin, 'run', '--config', configPath], {
    env: { ...childEnv(), NOTIFY_SOCKET: notifySocket },
    extendEnv: false,
    reject: false,
    buffer: false,
  });
  const log: LogLine[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    try {
      log.push(JSON.parse(line) as LogLine);
    } catch {
      log.push({ time: new Date().toISOString(), level: 50, component: 'unparsed', msg: line });
    }
  });
  t.teardown(() => {
    if (alive(child.pid!)) child.kill('SIGKILL');
  });
  return { pid: child.pid!, child, log };
}
