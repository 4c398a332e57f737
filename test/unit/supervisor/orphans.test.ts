import t from 'tap';
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchArgv } from '../../../src/supervisor/child.ts';
import { findExecutable } from '../../../src/supervisor/which.ts';
import { tempDir, waitFor } from '../../helpers/tmp.ts';
import { processRuns } from './helpers.ts';

const parentFixture = fileURLToPath(new URL('../../fixtures/supervisor-parent.ts', import.meta.url));

for (const [label, credentials] of [
  ['as the harness user', ''],
  ['after a switch to nobody:nogroup (the death signal survives the credential change)', '65534:65534'],
] as const) {
  t.test(`SIGKILL of the harness leaves no child behind, ${label}`, async (t) => {
    const parent = execa(process.execPath, ['--import', 'tsx', parentFixture, credentials], { reject: false, buffer: false, stdin: 'ignore', stderr: 'inherit' });
    let output = '';
    parent.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const childPid = await waitFor('the supervised child PID', () => (/^\d+\n/.test(output) ? Number(output.trim()) : undefined), 30_000);
    t.teardown(() => {
      if (processRuns(childPid)) process.kill(childPid, 'SIGKILL');
    });
    // Wait until the command itself runs: killing the harness while the child is still
    // in its launch shim is the race the shim handles on its own (tested below).
    await waitFor('the child to exec its command', () => (readFileSync(`/proc/${childPid}/cmdline`, 'utf8').startsWith('/bin/sleep') ? true : undefined), 30_000);
    t.ok(processRuns(childPid), 'the child runs while the harness runs');

    process.kill(parent.pid!, 'SIGKILL');
    await parent;
    await waitFor(`child ${childPid} to die with its harness`, () => (processRuns(childPid) ? undefined : true), 15_000);
    t.notOk(processRuns(childPid), 'the child did not outlive the harness');
  });
}

t.test('a child whose harness is already gone does not start the command', async (t) => {
  const dir = tempDir(t);
  const marker = join(dir, 'ran');
  const argv = launchArgv(
    { name: 'late', command: '/bin/touch', args: [marker], env: {}, stopGraceMs: 1000 },
    // Not our PID: from the child's point of view its harness has already been replaced.
    process.pid + 1_000_000,
    { setpriv: findExecutable('setpriv')!, sh: '/bin/sh' },
  );
  const result = await execa(argv.file, argv.args, { reject: false });
  t.equal(result.exitCode, 70);
  t.match(result.stderr, /harness \(pid \d+\) exited before the child started/);
  t.notOk(existsSync(marker), 'the command never ran');

  const ok = launchArgv({ name: 'on-time', command: '/bin/touch', args: [marker], env: {}, stopGraceMs: 1000 }, process.pid, { setpriv: findExecutable('setpriv')!, sh: '/bin/sh' });
  const good = await execa(ok.file, ok.args, { reject: false });
  t.equal(good.exitCode, 0);
  t.ok(existsSync(marker), 'with the right parent the command runs');
});
