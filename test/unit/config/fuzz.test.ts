/**
 * Property test of the configuration contract: generated files, environment variables and
 * --set flags go through the real CLI entry point, and every answer must keep the contract
 * (test/helpers/config-contract.ts). Fixed seed and a bounded count here; run it longer
 * with a random seed: npm run fuzz:config -- --runs 5000
 */
import fc from 'fast-check';
import t from 'tap';
import { caseArbitrary, runCase } from '../../helpers/config-contract.ts';
import { tempDir } from '../../helpers/tmp.ts';

const SEED = 1_222_026;
const RUNS = 150;

t.test(`generated configurations keep the contract (seed ${SEED}, ${RUNS} cases)`, async (t) => {
  const dir = tempDir(t, 'mh-config-fuzz-');
  const seen = new Set<number>();
  await fc.assert(
    fc.asyncProperty(caseArbitrary, async (c) => {
      const { result, problems } = await runCase(dir, c);
      seen.add(result.exitCode);
      if (problems.length) throw new Error(`${problems.join('; ')}\nargv: ${JSON.stringify(c.argv)}\nstderr: ${result.stderr.slice(0, 2000)}`);
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true },
  );
  // The generator must reach both sides of the contract, or it tests nothing.
  t.ok(seen.has(78), 'some cases were invalid configurations');
  t.ok(seen.has(0), 'some cases were valid');
});
