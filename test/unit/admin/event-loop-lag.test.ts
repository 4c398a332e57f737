import t from 'tap';
import { HarnessMetrics } from '../../../src/admin/metrics.ts';
import { lagSeconds } from '../../../src/admin/event-loop-lag.ts';

async function scrape(metrics: HarnessMetrics, name: string): Promise<number> {
  const text = await metrics.registry.metrics();
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!match) throw new Error(`${name} is not exported:\n${text}`);
  return Number(match[1]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('the sampling interval is not reported as lag', async (t) => {
  t.equal(lagSeconds(20e6), 0, 'a timer that ran on time is no lag');
  t.equal(lagSeconds(0), 0, 'an empty histogram reads 0');
  t.equal(lagSeconds(270e6), 0.25);
});

t.test('an idle loop reads near 0, not the sampling resolution', async (t) => {
  const metrics = new HarnessMetrics();
  await scrape(metrics, 'mesh_harness_event_loop_lag_seconds');
  // The quietest of a few one-second windows: on a busy test machine one window may
  // catch a scheduling hiccup, but an idle loop has quiet windows and they read ~0
  // (prom-client's setting read >= 0.1 s in every window).
  const windows: number[] = [];
  for (let i = 0; i < 4; i++) {
    await sleep(1000);
    windows.push(await scrape(metrics, 'mesh_harness_event_loop_lag_seconds'));
  }
  t.ok(Math.min(...windows) < 0.05, `p99 lag of an idle loop, per window: ${windows.join(', ')} s`);
});

t.test('a blocked loop shows in the max and is forgotten in the next window', async (t) => {
  const metrics = new HarnessMetrics();
  await scrape(metrics, 'mesh_harness_event_loop_lag_max_seconds');
  await sleep(100);
  const until = Date.now() + 300;
  while (Date.now() < until) {
    // blocking the loop on purpose
  }
  await sleep(100);
  t.ok((await scrape(metrics, 'mesh_harness_event_loop_lag_max_seconds')) >= 0.25, 'a 300 ms block is seen');
  await sleep(200);
  t.ok((await scrape(metrics, 'mesh_harness_event_loop_lag_max_seconds')) < 0.25, 'the window starts over at each scrape');
});

t.test("prom-client's own event-loop-lag series are gone, the other process metrics stay", async (t) => {
  const text = await new HarnessMetrics().registry.metrics();
  t.notMatch(text, /nodejs_eventloop_lag/);
  t.match(text, /^mesh_harness_process_cpu_seconds_total /m);
  t.match(text, /^mesh_harness_process_resident_memory_bytes /m);
  t.match(text, /^mesh_harness_nodejs_heap_size_used_bytes /m);
});
