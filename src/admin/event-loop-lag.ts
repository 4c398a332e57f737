/**
 * Event-loop lag as an operator can alert on it: how late the loop ran timers, measured
 * with perf_hooks.monitorEventLoopDelay at a 20 ms resolution and reported per scrape
 * window as the 99th percentile and the maximum.
 *
 * The histogram records the whole interval between two runs of its timer, so an idle
 * loop records about one resolution per sample; that floor is subtracted, or an idle
 * daemon would report 20 ms (at prom-client's old 100 ms setting it reported ~0.1 s). The
 * timer costs 50 wake-ups a second, a few microseconds each.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

export const LAG_RESOLUTION_MS = 20;

/** Lag in seconds from a histogram value in nanoseconds, with the sampling interval taken out. */
export function lagSeconds(recordedNs: number, resolutionMs = LAG_RESOLUTION_MS): number {
  if (!Number.isFinite(recordedNs) || recordedNs <= 0) return 0;
  return Math.max(0, recordedNs / 1e6 - resolutionMs) / 1000;
}

export function registerEventLoopLag(registry: Registry, prefix: string): IntervalHistogram {
  const histogram = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  histogram.enable();
  // Registered first: prom-client collects in registration order, and this one collect
  // sets both gauges and starts the next window.
  const p99 = new Gauge({
    name: `${prefix}event_loop_lag_seconds`,
    help: `99th percentile of the event-loop delay since the previous scrape, beyond the ${LAG_RESOLUTION_MS} ms sampling interval.`,
    registers: [registry],
    collect() {
      const empty = histogram.count === 0;
      p99.set(empty ? 0 : lagSeconds(histogram.percentile(99)));
      max.set(empty ? 0 : lagSeconds(histogram.max));
      histogram.reset();
    },
  });
  const max = new Gauge({
    name: `${prefix}event_loop_lag_max_seconds`,
    help: `Longest event-loop delay since the previous scrape, beyond the ${LAG_RESOLUTION_MS} ms sampling interval.`,
    registers: [registry],
  });
  return histogram;
}
