/** What to run as a supervised child: everything a restart needs to start it again the same way. */
export interface ChildSpec {
  /** Component name; also `component` on every log line the child writes. */
  name: string;
  command: string;
  args: string[];
  /** The child's complete environment: nothing is inherited from the harness. */
  env: Record<string, string>;
  uid?: number;
  gid?: number;
  /** Working directory; `/` when not given, so a child never pins a directory of the harness. */
  cwd?: string;
  /** How long the child may drain after SIGTERM before it is killed. */
  stopGraceMs: number;
  /** PR_SET_NO_NEW_PRIVS: setuid programs (sudo, su) cannot raise the child's privileges again. */
  noNewPrivileges?: boolean;
}

/**
 * Runs between setpriv and the real command. setpriv has set the death signal by now; if
 * the harness died before that, the signal will never come (the child was already
 * re-parented), so the script compares its parent with the harness PID and gives up.
 * The reason goes to stderr, which lands in the harness log.
 */
const PARENT_CHECK = '[ "$PPID" = "$1" ] || { echo "harness (pid $1) exited before the child started" >&2; exit 70; }; shift; exec "$@"';

/** Name the shell reports itself as in its own error messages ("mesh-harness-exec: 1: exec: x: not found"). */
export const EXEC_SHIM_NAME = 'mesh-harness-exec';

export interface LaunchPaths {
  setpriv: string;
  sh: string;
}

/**
 * The argv that starts `spec` so that it dies with the harness: setpriv switches
 * credentials first and sets PR_SET_PDEATHSIG=KILL after that (the kernel clears the
 * death signal on a credential change, and setpriv 2.38 applies it last; the no-orphan
 * test proves it for a child running as nobody), then the shell closes the race where
 * the harness died before the death signal was armed, then execs the command under its
 * own PID.
 */
export function launchArgv(spec: ChildSpec, harnessPid: number, paths: LaunchPaths): { file: string; args: string[] } {
  const credentials: string[] = [];
  if (spec.gid !== undefined) credentials.push('--regid', String(spec.gid));
  if (spec.uid !== undefined) credentials.push('--reuid', String(spec.uid));
  if (spec.uid !== undefined || spec.gid !== undefined) credentials.push('--clear-groups');
  if (spec.noNewPrivileges) credentials.push('--no-new-privs');
  return {
    file: paths.setpriv,
    args: ['--pdeathsig', 'KILL', ...credentials, '--', paths.sh, '-c', PARENT_CHECK, EXEC_SHIM_NAME, String(harnessPid), spec.command, ...spec.args],
  };
}

/** How a child ended, in words for `status` and the log. */
export function describeExit(exit: { code: number | null; signal: string | null }, command: string): string {
  if (exit.signal) return `killed by ${exit.signal}`;
  if (exit.code === 127) return `exited with code 127 (${command} not found; check the path in the configuration)`;
  if (exit.code === 126) return `exited with code 126 (${command} is not executable by the child's user)`;
  return `exited with code ${exit.code ?? 'unknown'}`;
}
