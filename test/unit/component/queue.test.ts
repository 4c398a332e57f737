import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { OperationQueue } from '../../../src/component/queue.ts';

t.test('operations run one at a time, in call order; a failure does not block the next', async (t) => {
  const queue = new OperationQueue();
  const events: string[] = [];
  const op = (name: string, ms: number, fail = false) => queue.run(async () => {
    events.push(`${name} start`);
    await sleep(ms);
    events.push(`${name} end`);
    if (fail) throw new Error(`${name} failed`);
    return name;
  });
  const results = await Promise.allSettled([op('start', 30, true), op('reload', 1), op('stop', 10)]);
  t.same(events, ['start start', 'start end', 'reload start', 'reload end', 'stop start', 'stop end']);
  t.same(results.map((r) => r.status), ['rejected', 'fulfilled', 'fulfilled']);
  t.equal((results[1] as PromiseFulfilledResult<string>).value, 'reload');
});
