import t from 'tap';
import { ReadinessGate, type Readiness } from '../../../src/probes/readiness.ts';

function gate(damping = { holdBaseMs: 80, holdMaxMs: 200, quietMs: 10_000 }) {
  const transitions: Readiness[] = [];
  const g = new ReadinessGate({ damping, onTransition: (r) => transitions.push(r) }, { ready: false, reason: 'ProbePending', message: 'pending' });
  return { g, transitions };
}
const failed = { ready: false, reason: 'ProbeFailed' as const, message: 'GET http://127.0.0.1:1/: 503 after 1 ms' };
const ok = { ready: true, message: 'all 1 probes pass' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('only transitions are emitted; a new message on the same side is not one', async (t) => {
  const { g, transitions } = gate();
  t.teardown(() => g.stop());
  g.update({ ready: false, reason: 'ProbePending', message: 'still pending' });
  t.equal(transitions.length, 0);
  g.update(ok);
  g.update(ok);
  t.equal(transitions.length, 1);
  g.update(failed);
  g.update({ ...failed, message: 'connection refused' });
  t.equal(transitions.length, 2);
  t.same(transitions.map((r) => [r.ready, r.reason, r.message]), [[true, undefined, 'all 1 probes pass'], [false, 'ProbeFailed', failed.message]]);
  t.equal(g.readiness().message, 'connection refused', 'the current message stays fresh for status');
});

t.test('repeated flaps: not-ready is never delayed, recoveries are held longer each time', async (t) => {
  const { g, transitions } = gate();
  t.teardown(() => g.stop());
  g.update(ok); // ready
  g.update(failed); // flap 1
  g.update(ok); // first recovery: immediate
  t.equal(transitions.length, 3);
  g.update(failed); // flap 2: at once
  t.equal(transitions.length, 4);
  t.equal(transitions[3]!.ready, false);
  g.update(ok); // held for 80 ms
  t.equal(transitions.length, 4, 'second recovery is held');
  t.ok(g.heldForMs() > 0);
  await sleep(150);
  t.equal(transitions.length, 5, 'and released when the hold ends');
  t.equal(transitions[4]!.ready, true);
  g.update(failed); // flap 3: hold 160
  g.update(ok);
  await sleep(100);
  t.equal(transitions.length, 6, 'third hold is longer than the second');
  g.update(failed); // a failure during the hold cancels the recovery without a transition
  await sleep(150);
  t.equal(transitions.length, 6);
  t.equal(g.readiness().ready, false);
  t.equal(g.flapCount(), 3);
});

t.test('a workload that flaps forever costs at most two transitions per maximum hold', async (t) => {
  const { g, transitions } = gate({ holdBaseMs: 20, holdMaxMs: 60, quietMs: 10_000 });
  t.teardown(() => g.stop());
  const start = Date.now();
  while (Date.now() - start < 600) {
    g.update(ok);
    await sleep(5);
    g.update(failed);
    await sleep(5);
  }
  // Unbounded this would be ~120 transitions; damped: 2 per 60 ms after the ramp, ~20 + a few.
  t.ok(transitions.length <= 30, `${transitions.length} transitions in 600 ms of flapping every 5 ms`);
  t.ok(transitions.length >= 4, 'yet recoveries still get through');
});
