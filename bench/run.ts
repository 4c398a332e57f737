/** npm run bench: runs every bench/*.bench.ts in turn; each writes bench/results/<suite>.json. */
import { execa } from 'execa';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const suites = readdirSync(dir).filter((f) => f.endsWith('.bench.ts')).filter((f) => only.length === 0 || only.some((o) => f.startsWith(o))).sort();
let failed = 0;
for (const suite of suites) {
  process.stdout.write(`\n### ${suite}\n`);
  const result = await execa(process.execPath, ['--import', 'tsx', '--expose-gc', join(dir, suite)], { stdio: 'inherit', reject: false });
  if (result.exitCode !== 0) {
    failed += 1;
    process.stdout.write(`${suite} failed with exit code ${result.exitCode}\n`);
  }
}
process.exitCode = failed ? 1 : 0;
