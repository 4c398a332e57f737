/**
 * Whether the configuration file can be changed only by root. The file decides what the
 * harness runs as root (proxy.binary, spire.agentBinary) and what the cluster may make
 * this VM do (probes.allowClusterExec, probes.allowClusterHosts): an account that can
 * write it, or replace it, is root on the next start or SIGHUP. sshd's StrictModes makes
 * the same check of its own files.
 *
 * Refused: a file not owned by root (or by the account running the harness, which gains
 * nothing from it), a file writable by group or others, and a directory on the way to it
 * (after symlinks too) that is not owned by root or is writable by group or others without
 * the sticky bit (such as /tmp, where only a file's owner may rename or delete it).
 */
import { realpathSync, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { EXIT, HarnessError } from '../util/errors.ts';

/** A configuration file others could change, where the command needs one only root can: exit 78, one line. */
export class UntrustedConfigFileError extends HarnessError {
  constructor(problem: string) {
    super(problem, EXIT.CONFIG);
  }
}

const WRITABLE_BY_OTHERS = 0o022;
const STICKY = 0o1000;

function mode(stats: Stats): string {
  return `0${(stats.mode & 0o7777).toString(8).padStart(3, '0')}`;
}

function describe(stats: Stats): string {
  return `owner ${stats.uid}:${stats.gid}, mode ${mode(stats)}`;
}

/** The directories from `path`'s parent up to /. */
function directoriesAbove(path: string): string[] {
  const dirs: string[] = [];
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    dirs.push(dir);
    if (dir === dirname(dir)) return dirs;
  }
}

const STAKES = 'it decides what runs as root (proxy.binary, probes.allowClusterExec, probes.allowClusterHosts), so only root may change it';

/**
 * Why the configuration file at `path` (whose opened descriptor has `stats`) could be
 * changed by an account other than root, in one line with the fix; undefined when it
 * cannot. `trustedUids`: root and the account running this process.
 */
export function untrustedConfigFileProblem(path: string, stats: Stats, trustedUids: readonly number[] = [0, process.geteuid?.() ?? 0]): string | undefined {
  const fix = `chown root:root ${path} && chmod go-w ${path}`;
  if (!trustedUids.includes(stats.uid)) return `config file ${path} is not owned by root (${describe(stats)}); ${STAKES}; fix: ${fix}`;
  if (stats.mode & WRITABLE_BY_OTHERS) return `config file ${path} is writable by group or others (${describe(stats)}); ${STAKES}; fix: ${fix}`;
  const absolute = resolve(path);
  let real = absolute;
  try {
    real = realpathSync(absolute);
  } catch {
    // Opened a moment ago; judged by the path as given if it moved since.
  }
  for (const dir of new Set([...directoriesAbove(absolute), ...directoriesAbove(real)])) {
    let dirStats: Stats;
    try {
      dirStats = statSync(dir);
    } catch {
      continue;
    }
    const dirFix = `chown root:root ${dir} && chmod go-w ${dir}`;
    if (!trustedUids.includes(dirStats.uid)) return `config file ${path} is in directory ${dir}, which is not owned by root (${describe(dirStats)}), so its owner can replace the file; ${STAKES}; fix: ${dirFix}, or keep the file elsewhere`;
    if (dirStats.mode & WRITABLE_BY_OTHERS && !(dirStats.mode & STICKY)) return `config file ${path} is in directory ${dir}, which group or others can write (${describe(dirStats)}), so they can replace the file; ${STAKES}; fix: ${dirFix}, or keep the file elsewhere`;
  }
  return undefined;
}
