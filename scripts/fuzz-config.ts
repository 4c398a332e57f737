/**
 * Runs the configuration property test longer, with a random seed (or --seed N), and counts
 * every violation instead of stopping at the first:
 *   npm run fuzz:config -- --runs 5000 [--seed 42]
 * Exit 0 when no case broke the contract.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { caseArbitrary, runCase } from '../test/helpers/config-contract.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '1000' }, seed: { type: 'string' } } });
const runs = Number(values.runs);
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const dir = mkdtempSync(join(tmpdir(), 'mh-config-fuzz-'));
const codes = new Map<number, number>();
let violations = 0;
const start = Date.now();
try {
  const cases = fc.sample(caseArbitrary, { numRuns: runs, seed });
  for (const [i, c] of cases.entries()) {
    const { result, problems } = await runCase(dir, c);
    codes.set(result.exitCode, (codes.get(result.exitCode) ?? 0) + 1);
    if (problems.length) {
      violations++;
      console.log(`case ${i}: ${problems.join('; ')}\n  argv: ${JSON.stringify(c.argv)}\n  env: ${JSON.stringify(c.env).slice(0, 300)}\n  file: ${JSON.stringify(c.file).slice(0, 300)}`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const summary = [...codes].sort(([a], [b]) => a - b).map(([code, n]) => `exit ${code}: ${n}`).join(', ');
console.log(`seed ${seed}: ${runs} cases in ${((Date.now() - start) / 1000).toFixed(1)} s (${summary}); ${violations} contract violations`);
process.exitCode = violations ? 1 : 0;
