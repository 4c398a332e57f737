import { spawn } from 'node:child_process';
import { launchArgv, type LaunchPaths } from '../supervisor/child.ts';
import { findExecutable } from '../supervisor/which.ts';
import { resolveGroup, resolveUser, type ResolvedGroup, type ResolvedUser } from '../util/users.ts';
import { elapsedMs, timeoutText, truncate, type CheckContext, type CheckResult } from './result.ts';
import { describeHandler } from './spec.ts';

/** The account exec probes run as: never root, never the proxy's uid or gid. */
export interface ExecAccount {
  user: string;
  uid: number;
  gid: number;
}

export interface AccountResolver {
  resolveUser(user: string, setting?: string): Promise<ResolvedUser>;
  resolveGroup(group: string, setting?: string): Promise<ResolvedGroup>;
}

/** The configured exec user cannot be used; exec probes fail with this message until it is fixed. */
export class ExecAccountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExecAccountError';
  }
}

/**
 * Resolves `probes.execUser` and refuses accounts that would make an exec probe more than
 * a health check: root (uid 0 or gid 0), and the proxy's user or group. Traffic of the
 * proxy's uid/gid bypasses the redirection (so the mesh's policy), and the SPIRE entry
 * for that gid hands out the workload's SVID and private key to any process in it.
 */
export async function resolveExecAccount(
  execUser: string,
  proxy: { user: string; group: string },
  users: AccountResolver = { resolveUser, resolveGroup },
): Promise<ExecAccount> {
  let account: ResolvedUser;
  try {
    account = await users.resolveUser(execUser, 'probes.execUser');
  } catch (err) {
    throw new ExecAccountError((err as Error).message);
  }
  const fix = 'set probes.execUser to an unprivileged account of its own, such as nobody';
  if (account.uid === 0 || account.gid === 0) {
    throw new ExecAccountError(`probes.execUser "${execUser}" is root (uid ${account.uid}, primary gid ${account.gid}); exec probes never run as root; ${fix}`);
  }
  const [proxyUser, proxyGroup] = await Promise.all([
    users.resolveUser(proxy.user).catch(() => undefined),
    users.resolveGroup(proxy.group).catch(() => undefined),
  ]);
  if ((proxyUser && proxyUser.uid === account.uid) || (proxyGroup && proxyGroup.gid === account.gid)) {
    throw new ExecAccountError(
      `probes.execUser "${execUser}" shares the proxy's uid or gid (${proxy.user}/${proxy.group}), whose traffic bypasses the mesh and which can fetch the workload's SVID; ${fix}`,
    );
  }
  return { user: account.name, uid: account.uid, gid: account.gid };
}

/** The only environment an exec probe gets: nothing of the harness's (no tokens, no MESH_HARNESS_*). */
export const EXEC_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
  HOME: '/',
};

/** Output kept per check (kubelet keeps 10 KiB); the message shows far less. */
const OUTPUT_LIMIT = 10 * 1024;
const MESSAGE_OUTPUT_CHARS = 200;

let launchPaths: LaunchPaths | undefined;

function paths(): LaunchPaths | undefined {
  if (launchPaths) return launchPaths;
  const setpriv = findExecutable('setpriv');
  if (!setpriv) return undefined;
  launchPaths = { setpriv, sh: findExecutable('sh') ?? '/bin/sh' };
  return launchPaths;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // The group is gone already.
  }
}

/**
 * An exec probe: the command (no shell) as `account`, with a clean environment, in `/`,
 * with no way back to more privileges (no_new_privs), in its own process group that is
 * SIGKILLed at the timeout and after the command exits (nothing it started lingers),
 * and armed to die with the harness (the supervisor's launch: setpriv + parent check).
 * Exit 0 is success; the output, truncated, goes into the message.
 */
export function execCheck(command: string[], account: ExecAccount, context: CheckContext): Promise<CheckResult> {
  const start = performance.now();
  const what = describeHandler({ kind: 'exec', command });
  const launch = paths();
  if (!launch) return Promise.resolve({ ok: false, latencyMs: 0, message: `${what}: setpriv not found on PATH (package util-linux); exec probes cannot run without it` });
  const argv = launchArgv(
    { name: 'exec-probe', command: command[0]!, args: command.slice(1), env: { ...EXEC_ENV }, uid: account.uid, gid: account.gid, stopGraceMs: 0, noNewPrivileges: true },
    process.pid,
    launch,
  );
  return new Promise((resolve) => {
    const child = spawn(argv.file, argv.args, { env: { ...EXEC_ENV }, cwd: '/', detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let kept = 0;
    const collect = (chunk: Buffer) => {
      if (kept >= OUTPUT_LIMIT) return;
      chunks.push(chunk.subarray(0, OUTPUT_LIMIT - kept));
      kept += Math.min(chunk.length, OUTPUT_LIMIT - kept);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    const finish = (ok: boolean, saw: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      context.signal.removeEventListener('abort', onAbort);
      if (child.pid !== undefined) killGroup(child.pid);
      child.stdout.destroy();
      child.stderr.destroy();
      const output = truncate(Buffer.concat(chunks).toString('utf8'), MESSAGE_OUTPUT_CHARS);
      resolve({ ok, latencyMs: elapsedMs(start), message: `${what}: ${saw}${output ? `: ${output}` : ''}` });
    };
    const onExit = () => {
      const latencyMs = elapsedMs(start);
      if (exit!.signal) return finish(false, `killed by ${exit!.signal} after ${latencyMs} ms`);
      const code = exit!.code;
      const hint = code === 127 ? ` (${command[0]} not found)` : code === 126 ? ` (${command[0]} not executable by ${account.user})` : '';
      finish(code === 0, `exit ${code}${hint} after ${latencyMs} ms`);
    };
    // Resolve once the output is drained ('close'), unless something the command left
    // behind holds the pipes open: then the timeout below ends it with the exit status seen.
    const timer = setTimeout(() => (exit ? onExit() : finish(false, timeoutText(context.timeoutMs))), context.timeoutMs);
    const onAbort = () => finish(false, 'cancelled');
    context.signal.addEventListener('abort', onAbort, { once: true });
    child.once('error', (err) => finish(false, `cannot start: ${err.message}`));
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      // Leftovers in the group go now, which also closes the pipes they held.
      if (child.pid !== undefined) killGroup(child.pid);
    });
    child.once('close', () => {
      if (exit) onExit();
    });
  });
}
