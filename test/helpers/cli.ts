import { execa, type ResultPromise } from 'execa';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
export const harnessBin = join(repoRoot, 'bin', 'mesh-harness.mjs');

/**
 * Environment for the CLI under test: the caller's PATH, nothing from MESH_HARNESS_*, and
 * none of the test runner's loader hooks (the CLI under test is the built bundle).
 */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith('MESH_HARNESS_') || k.startsWith('TAP') || k.startsWith('_TAPJS') || k === 'NODE_OPTIONS' || k === 'NOTIFY_SOCKET' || k === 'WATCHDOG_USEC') continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** Runs the bundled CLI (npm test builds dist/ first) and returns its result, never throwing on exit code. */
export function runCli(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}) {
  return execa(process.execPath, [harnessBin, ...args], { env: options.env ?? cleanEnv(), extendEnv: false, nodeOptions: [], reject: false, timeout: options.timeoutMs ?? 30_000 });
}

/** Starts a long-running CLI command (for `run`). */
export function spawnCli(args: string[], options: { env?: Record<string, string> } = {}): ResultPromise {
  return execa(process.execPath, [harnessBin, ...args], { env: options.env ?? cleanEnv(), extendEnv: false, nodeOptions: [], reject: false, buffer: true });
}
