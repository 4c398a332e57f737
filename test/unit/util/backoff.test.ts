import t from 'tap';
import { Backoff } from '../../../src/util/backoff.ts';

t.test('delays grow exponentially, stay within half-jitter bounds and cap at max', async (t) => {
  const low = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0 });
  const high = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.999999 });
  t.same([1, 2, 3, 4, 5, 6].map(() => low.next()), [50, 100, 200, 400, 500, 500]);
  t.same([1, 2, 3, 4, 5, 6].map(() => high.next()), [100, 200, 400, 800, 1000, 1000]);
});

t.test('reset starts over', async (t) => {
  const b = new Backoff({ baseMs: 10, maxMs: 1000, random: () => 0 });
  b.next();
  b.next();
  t.equal(b.attempts, 2);
  b.reset();
  t.equal(b.next(), 5);
});

t.test('rejects nonsense bounds', async (t) => {
  t.throws(() => new Backoff({ baseMs: 0, maxMs: 10 }), RangeError);
  t.throws(() => new Backoff({ baseMs: 100, maxMs: 10 }), RangeError);
});
