/**
 * Running a Node program as another account from a checkout that account may not enter
 * (a clone under /root, any `mktemp -d`: both 0700). Two things break there, and each has
 * one remedy here:
 * - the program's files: copied into a directory the account can reach (`copyReadable`);
 * - NODE_OPTIONS: a test runner's loader hooks there (tap injects its own into every process
 *   spawned under it, and their spawns) point into the checkout, and Node dies loading them.
 *   The launcher and `asAccount` start the program without it.
 */
import { chmodSync, copyFileSync, writeFileSync } from 'node:fs';

/** Copies `from` to `to` readable by every account (0644); the directories on the way to `to` must let the account through. */
export function copyReadable(from: string, to: string): void {
  copyFileSync(from, to);
  chmodSync(to, 0o644);
}

/** Writes `path`, an executable (0755) that runs `node script` with the given arguments and without NODE_OPTIONS. */
export function writeNodeLauncher(path: string, script: string): string {
  writeFileSync(path, `#!/bin/sh\nunset NODE_OPTIONS\nexec ${process.execPath} ${script} "$@"\n`, { mode: 0o755 });
  chmodSync(path, 0o755);
  return path;
}

/** The argv prefix that runs a command as `uid`:`gid` without supplementary groups and without NODE_OPTIONS. */
export function asAccount(account: { uid: number; gid: number }): string[] {
  return ['env', '-u', 'NODE_OPTIONS', 'setpriv', `--reuid=${account.uid}`, `--regid=${account.gid}`, '--clear-groups'];
}
