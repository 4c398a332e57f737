import t from 'tap';
import { execa } from 'execa';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { listNetns } from '../../../src/util/netns.ts';
import { repoRoot } from '../../helpers/cli.ts';

function gone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
  } catch {
    return true;
  }
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`a test process ended by ${signal} before its teardowns still removes its namespaces and what runs in them`, async (t) => {
    const child = execa(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/fixtures/netns-holder.ts')], { reject: false, buffer: false, stdin: 'ignore' });
    t.teardown(() => {
      if (child.exitCode === undefined || child.exitCode === null) child.kill('SIGKILL');
    });
    const name = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', resolve);
      void child.then((r) => reject(new Error(`fixture exited early: ${String(r.exitCode)}`)));
    });
    t.ok((await listNetns(name)).includes(name), 'the namespace exists while the test runs');
    const pids = String((await execa('ip', ['netns', 'pids', name])).stdout).split('\n').filter(Boolean);
    t.ok(pids.length > 0, 'a process runs in it');
    child.kill(signal);
    const result = await child;
    t.equal(result.signal, signal, 'the test process still dies of the signal');
    t.same(await listNetns(name), [], 'the namespace is gone');
    for (const pid of pids) t.ok(gone(Number(pid)), `pid ${pid} is gone (or a zombie waiting to be reaped)`);
  });
}
