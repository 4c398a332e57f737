import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../admin/metrics.ts';
import type { Readiness } from './readiness.ts';
import type { CheckResult } from './result.ts';
import type { ProbeStatus } from './worker.ts';

type Labels = 'probe' | 'source';

function shared<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/** Probe metrics: one series per probe, removed with the probe. */
export class ProbeMetrics {
  private readonly passing: Gauge<Labels>;
  private readonly successes: Gauge<Labels>;
  private readonly failures: Gauge<Labels>;
  private readonly checks: Counter<Labels | 'result'>;
  private readonly duration: Histogram<Labels>;
  private readonly workloadReady: Gauge;
  private readonly transitions: Counter<'ready'>;
  private readonly refused: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    const p = METRIC_PREFIX;
    this.passing = shared(registry, `${p}probe_passing`, () => new Gauge({ name: `${p}probe_passing`, help: 'Whether a workload probe passes after its thresholds (1) or not (0).', labelNames: ['probe', 'source'], registers }));
    this.successes = shared(registry, `${p}probe_consecutive_successes`, () => new Gauge({ name: `${p}probe_consecutive_successes`, help: 'Successful checks in a row of a workload probe.', labelNames: ['probe', 'source'], registers }));
    this.failures = shared(registry, `${p}probe_consecutive_failures`, () => new Gauge({ name: `${p}probe_consecutive_failures`, help: 'Failed checks in a row of a workload probe.', labelNames: ['probe', 'source'], registers }));
    this.checks = shared(registry, `${p}probe_checks_total`, () => new Counter({ name: `${p}probe_checks_total`, help: 'Checks run by a workload probe, by result.', labelNames: ['probe', 'source', 'result'], registers }));
    this.duration = shared(registry, `${p}probe_duration_seconds`, () => new Histogram({
      name: `${p}probe_duration_seconds`,
      help: 'How long a workload probe check took (a timed-out check counts its timeout).',
      labelNames: ['probe', 'source'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }));
    this.workloadReady = shared(registry, `${p}workload_ready`, () => new Gauge({ name: `${p}workload_ready`, help: 'Whether the workload probes say the workload is ready (1) or not (0).', registers }));
    this.transitions = shared(registry, `${p}workload_readiness_transitions_total`, () => new Counter({ name: `${p}workload_readiness_transitions_total`, help: 'Readiness transitions sent on, by the readiness reached.', labelNames: ['ready'], registers }));
    this.refused = shared(registry, `${p}probes_refused`, () => new Gauge({ name: `${p}probes_refused`, help: 'Probes from the cluster this VM refuses to run (exec not allowed, invalid).', registers }));
  }

  observe(status: ProbeStatus, result: CheckResult): void {
    const labels = { probe: status.name, source: status.source };
    this.passing.set(labels, status.passing ? 1 : 0);
    this.successes.set(labels, status.consecutiveSuccesses);
    this.failures.set(labels, status.consecutiveFailures);
    this.checks.inc({ ...labels, result: result.ok ? 'success' : 'failure' });
    this.duration.observe(labels, result.latencyMs / 1000);
  }

  added(status: ProbeStatus): void {
    const labels = { probe: status.name, source: status.source };
    this.passing.set(labels, status.passing ? 1 : 0);
    this.successes.set(labels, 0);
    this.failures.set(labels, 0);
  }

  removed(status: ProbeStatus): void {
    const labels = { probe: status.name, source: status.source };
    for (const metric of [this.passing, this.successes, this.failures, this.duration]) metric.remove(labels);
    for (const result of ['success', 'failure']) this.checks.remove({ ...labels, result });
  }

  readiness(readiness: Readiness, transition: boolean): void {
    this.workloadReady.set(readiness.ready ? 1 : 0);
    if (transition) this.transitions.inc({ ready: String(readiness.ready) });
  }

  refusals(count: number): void {
    this.refused.set(count);
  }
}
