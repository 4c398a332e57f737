import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { findExecutable } from './which.ts';

export interface BinaryProbe {
  /** As configured. */
  configured: string;
  /** The executable found for it, if any. */
  path?: string;
  /** First line of `<binary> --version`, when it answered with exit 0. */
  version?: string;
  /** Whether the binary ran and exited by itself (with any code): found, executable, right architecture. */
  runnable: boolean;
  /** Why it is not runnable, or how `--version` ended when it gave no version. */
  note?: string;
}

/** A slow or hanging binary must not make `version` or `check` slow. */
export const PROBE_TIMEOUT_MS = 2000;

/**
 * Runs `<binary> --version`. linkerd2-proxy has no --version (it reads only its environment
 * and exits 64 on this empty one), so a non-zero exit is "runnable, version unknown", not an
 * error. The probe gets no environment beyond PATH, so it can never start a real proxy.
 */
export async function probeBinary(configured: string, pathEnv: string | undefined, timeoutMs = PROBE_TIMEOUT_MS): Promise<BinaryProbe> {
  const path = findExecutable(configured, pathEnv);
  if (!path) return { configured, runnable: false, note: configured.includes('/') && existsSync(configured) ? 'exists but is not executable' : 'not found' };
  const result = await execa(path, ['--version'], { env: { PATH: pathEnv ?? '/usr/sbin:/usr/bin:/sbin:/bin' }, extendEnv: false, reject: false, all: true, stdin: 'ignore', timeout: timeoutMs });
  if (result.timedOut) return { configured, path, runnable: false, note: `--version did not finish within ${timeoutMs} ms` };
  const cause = result.cause as NodeJS.ErrnoException | undefined;
  if (result.exitCode === undefined) {
    return { configured, path, runnable: false, note: cause?.code ? `cannot be executed (${cause.code}: ${cause.message})` : `killed by ${result.signal ?? 'a signal'}` };
  }
  const line = String(result.all ?? '')
    .split('\n')
    .map((l) => l.trim())
    .find(Boolean);
  if (result.exitCode === 0 && line) return { configured, path, runnable: true, version: line.slice(0, 120) };
  return { configured, path, runnable: true, note: `--version exited ${result.exitCode}` };
}
