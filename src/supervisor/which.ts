import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

/** Where programs are looked up when PATH lacks them (systemd units often have a short PATH). */
const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The absolute path of an executable: a path containing a slash is taken as is (when it
 * exists and is executable), a bare name is searched on PATH and then the usual system
 * directories (unless systemDirs is false: the iptables runner honours PATH exactly, so
 * a caller can choose the programs). Undefined when nothing is found.
 */
export function findExecutable(command: string, pathEnv: string | undefined = process.env.PATH, options: { systemDirs?: boolean } = {}): string | undefined {
  if (command.includes('/')) return isExecutableFile(command) ? resolve(command) : undefined;
  const dirs = [...(pathEnv ?? '').split(delimiter).filter(Boolean), ...(options.systemDirs === false ? [] : SYSTEM_DIRS)];
  for (const dir of dirs) {
    const candidate = join(dir, command);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}
