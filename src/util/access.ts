/**
 * Whether an unprivileged account can reach a path, judged from the mode bits the way the
 * kernel does for a process with that uid and gid and no supplementary groups (how the
 * harness starts its children). Used before starting a child, so a directory it cannot
 * enter is named in one clear message instead of surfacing as a panic in its log.
 * POSIX ACLs and LSMs are not consulted: a grant that exists only in an ACL is reported
 * as missing.
 */
import { statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';

export interface Account {
  uid: number;
  gid: number;
  /** For messages, e.g. "meshproxy:meshproxy". */
  label: string;
}

type Permission = 'read' | 'write' | 'execute';
const BIT: Record<Permission, number> = { read: 4, write: 2, execute: 1 };

function allows(stats: Stats, account: Account, permission: Permission): boolean {
  if (account.uid === 0) return true;
  const bit = BIT[permission];
  if (stats.uid === account.uid) return (stats.mode & (bit << 6)) !== 0;
  if (stats.gid === account.gid) return (stats.mode & (bit << 3)) !== 0;
  return (stats.mode & bit) !== 0;
}

function mode(stats: Stats): string {
  return `0${(stats.mode & 0o7777).toString(8).padStart(3, '0')}`;
}

function owner(stats: Stats): string {
  return `owner ${stats.uid}:${stats.gid}`;
}

/** The directories a process passes through to reach `path`, from the root down. */
function ancestors(path: string): string[] {
  const dirs: string[] = [];
  for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
    dirs.unshift(dir);
    if (dir === dirname(dir)) return dirs;
  }
}

/**
 * Why `account` cannot reach `path` with `permission` on the path itself (execute on
 * every directory on the way), or undefined when it can. A path that does not exist is
 * judged by the directories that do: the child may create or wait for it.
 */
export function accessProblem(path: string, account: Account, permission: Permission): string | undefined {
  for (const dir of ancestors(path)) {
    let stats: Stats;
    try {
      stats = statSync(dir);
    } catch {
      return undefined;
    }
    if (!allows(stats, account, 'execute')) {
      return `${account.label} cannot enter directory ${dir} (mode ${mode(stats)}, ${owner(stats)}) on the way to ${path}; allow it (chmod o+x ${dir}, or give the directory the account's group with g+x)`;
    }
  }
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch {
    return undefined;
  }
  if (!allows(stats, account, permission)) {
    return `${account.label} has no ${permission} permission on ${path} (mode ${mode(stats)}, ${owner(stats)})`;
  }
  return undefined;
}
