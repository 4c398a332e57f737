// What every release build derives the same way: the repository root, the build time
// (SOURCE_DATE_EPOCH), the bundled npm packages and their licences, and the error a build
// step throws when it cannot go on.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A failure the script reports as one line (no stack) and exits with `code` (64 usage, 69 missing tool, 1 other). */
export class BuildError extends Error {
  constructor(message, code = 1) {
    super(message);
    this.code = code;
  }
}

/**
 * Every timestamp a build writes: SOURCE_DATE_EPOCH when set, else the last commit's time,
 * so the same commit builds the same bytes.
 */
export function sourceDateEpoch() {
  const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? execFileSync('git', ['-C', repoRoot, 'log', '-1', '--format=%ct'], { encoding: 'utf8' }).trim());
  if (!Number.isInteger(epoch) || epoch <= 0) throw new BuildError('SOURCE_DATE_EPOCH must be a positive integer (seconds)', 64);
  return epoch;
}

/**
 * The production dependency closure (what esbuild can have bundled), as name@version
 * (licence); with `only`, just the packages named in it (those a bundle really contains).
 */
export function bundledPackages(only) {
  const lock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8'));
  return Object.entries(lock.packages)
    .filter(([path, info]) => path.startsWith('node_modules/') && !info.dev && !path.endsWith('node_modules/koffi'))
    .map(([path, info]) => ({ name: path.replace(/^.*node_modules\//, ''), info }))
    .filter(({ name }) => !only || only.has(name))
    .map(({ name, info }) => `${name}@${info.version} (${info.license ?? 'see package'})`)
    .sort();
}

/** Runs `main`; a BuildError becomes "<name>: message" on stderr and its exit code. */
export async function runScript(name, main) {
  try {
    await main();
  } catch (error) {
    if (!(error instanceof BuildError)) throw error;
    process.stderr.write(`${name}: ${error.message}\n`);
    process.exit(error.code);
  }
}
