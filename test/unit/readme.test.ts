// The README's two commands are what a new user runs first: the demo one must set the host
// up before the demo, and CI must run the test one as written, or the two drift apart and
// "works in CI" stops meaning "works from the README".
import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/specs.ts';

const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const quickStart = /## Quick start\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
const commands = quickStart
  .split('\n')
  .map((line) => line.replace(/#.*$/, '').trim())
  .filter(Boolean);

t.test('the quick start: set up, then the demo; set up fully, then the tests', async (t) => {
  t.equal(commands.length, 2, quickStart);
  t.equal(commands[0], 'scripts/setup.sh && node bin/mesh-harness.mjs demo');
  t.equal(commands[1], 'scripts/setup.sh --full && npm test');
});

t.test('.ci/run runs the README test command as written', async (t) => {
  const ci = readFileSync(join(REPO_ROOT, '.ci', 'run'), 'utf8');
  t.equal(/^TEST_COMMAND='([^']*)'$/m.exec(ci)?.[1], commands[1]);
  t.match(ci, /^bash -c "\$TEST_COMMAND" 2>&1 \| tee /m, 'and runs nothing else in its place');
});

t.test('scripts/setup.sh runs as the README writes it (executable)', async (t) => {
  t.ok(statSync(join(REPO_ROOT, 'scripts', 'setup.sh')).mode & 0o100);
});
