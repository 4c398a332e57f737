import t from 'tap';
import { fail, ok, runChecks, type Check, type CheckResult } from '../../../src/check/check.ts';
import { reportJson, renderResult, renderSummary } from '../../../src/check/render.ts';

function check(id: string, run: Check['run'], timeoutMs = 1000): Check {
  return { id, area: 'network', name: `check ${id}`, timeoutMs, timeoutHint: `hint for ${id}`, run };
}

t.test('a check that never settles fails at its own deadline with its timeout hint; the others are unaffected', async (t) => {
  const results = (await Promise.all(runChecks([check('a.hang', () => new Promise(() => undefined), 200), check('a.fine', async () => ok('fine'))]))).flat();
  t.match(results[0], { id: 'a.hang', verdict: 'fail', message: 'did not finish within 200 ms', hint: 'hint for a.hang' });
  t.match(results[1], { id: 'a.fine', verdict: 'ok', message: 'fine' });
});

t.test('the overall budget caps every check, whatever its own timeout', async (t) => {
  const results = (await Promise.all(runChecks([check('a.long', () => new Promise(() => undefined), 60_000)], { budgetMs: 300 }))).flat();
  t.match(results[0], { verdict: 'fail', message: 'did not finish within 300 ms' });
});

t.test('a check that throws is reported as a failure of the check itself, not a crash', async (t) => {
  const [result] = (await Promise.all(runChecks([check('a.bug', async () => { throw new Error('boom'); })]))).flat();
  t.match(result, { verdict: 'fail', message: 'the check itself failed: boom', hint: /report it/ });
});

t.test('results keep plan order even when later checks finish first', async (t) => {
  const slow = check('a.slow', () => new Promise((resolve) => setTimeout(() => resolve(ok('slow')), 100)));
  const quick = check('a.quick', async () => ok('quick'));
  const order: string[] = [];
  for (const pending of runChecks([slow, quick])) for (const result of await pending) order.push(result.id);
  t.same(order, ['a.slow', 'a.quick']);
});

t.test('rendering: ASCII marks, message, hint and runbook under a failure; JSON in linkerd check terms', async (t) => {
  const results: CheckResult[] = [
    { id: 'identity.svid', area: 'identity', name: 'the Workload API serves an SVID', durationMs: 3, ...fail('socket missing', 'start spire-agent') },
    { id: 'network.port', subject: '4143', area: 'network', name: 'port 4143 is free', durationMs: 1, ...ok('free') },
  ];
  t.equal(renderResult(results[0]!, 'ascii'), '[FAIL] the Workload API serves an SVID\n         socket missing\n         hint: start spire-agent\n         see docs/operations.md#check-identity-svid');
  t.equal(renderResult(results[1]!, 'unicode'), '√ port 4143 is free: free');
  t.equal(renderSummary(results, 'unicode', 1234), 'Status check results are × (1 passed, 1 failed, 0 warnings, 0 skipped; 1.2 s)');
  t.same(reportJson(results, 1234), {
    success: false,
    durationMs: 1234,
    summary: { ok: 1, warn: 0, fail: 1, skip: 0 },
    categories: [
      { categoryName: 'identity', checks: [{ id: 'identity.svid', description: 'the Workload API serves an SVID', result: 'error', message: 'socket missing', hint: 'start spire-agent', runbook: 'docs/operations.md#check-identity-svid', durationMs: 3 }] },
      { categoryName: 'network', checks: [{ id: 'network.port', subject: '4143', description: 'port 4143 is free', result: 'success', message: 'free', durationMs: 1 }] },
    ],
  });
});
