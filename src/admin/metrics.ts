/**
 * Every metric the harness exports is named here and created through the helpers below,
 * so a name lives in one place and two components sharing a registry share one series.
 */
import { Registry, Counter, Gauge } from 'prom-client';
import type { ComponentState } from '../component/component.ts';
import { registerEventLoopLag } from './event-loop-lag.ts';
import processCpuTotal from 'prom-client/lib/metrics/processCpuTotal.js';
import processStartTime from 'prom-client/lib/metrics/processStartTime.js';
import osMemoryHeap from 'prom-client/lib/metrics/osMemoryHeap.js';
import processOpenFileDescriptors from 'prom-client/lib/metrics/processOpenFileDescriptors.js';
import processMaxFileDescriptors from 'prom-client/lib/metrics/processMaxFileDescriptors.js';
import processResources from 'prom-client/lib/metrics/processResources.js';
import processHandles from 'prom-client/lib/metrics/processHandles.js';
import processRequests from 'prom-client/lib/metrics/processRequests.js';
import heapSizeAndUsed from 'prom-client/lib/metrics/heapSizeAndUsed.js';
import heapSpacesSizeAndUsed from 'prom-client/lib/metrics/heapSpacesSizeAndUsed.js';
import version from 'prom-client/lib/metrics/version.js';
import gc from 'prom-client/lib/metrics/gc.js';

export const METRIC_PREFIX = 'mesh_harness_';

export const METRIC = {
  componentReady: `${METRIC_PREFIX}component_ready`,
  componentPhaseSince: `${METRIC_PREFIX}component_phase_since_timestamp_seconds`,
  childRestarts: `${METRIC_PREFIX}child_restarts_total`,
  childUp: `${METRIC_PREFIX}child_up`,
  svidExpiry: `${METRIC_PREFIX}svid_expiry_timestamp_seconds`,
  svidRotations: `${METRIC_PREFIX}svid_rotations_total`,
  iptablesDriftRepairs: `${METRIC_PREFIX}iptables_drift_repairs_total`,
  iptablesLastApply: `${METRIC_PREFIX}iptables_last_apply_timestamp_seconds`,
} as const;

/** The counter registered under `name`, created on first use. */
export function sharedCounter<L extends string = never>(registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  return (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter<L>({ name, help, labelNames, registers: [registry] });
}

/** The gauge registered under `name`, created on first use. */
export function sharedGauge<L extends string = never>(registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
  return (registry.getSingleMetric(name) as Gauge<L> | undefined) ?? new Gauge<L>({ name, help, labelNames, registers: [registry] });
}

/**
 * prom-client's default process metrics (CPU, memory, file descriptors, heap, GC), all but
 * its event-loop lag, which event-loop-lag.ts measures so that an idle loop reads 0.
 * collectDefaultMetrics has no way to leave one out, so the collectors are imported one
 * by one (statically: the bundle carries them).
 */
const PROCESS_COLLECTORS = [processCpuTotal, processStartTime, osMemoryHeap, processOpenFileDescriptors, processMaxFileDescriptors, processResources, processHandles, processRequests, heapSizeAndUsed, heapSpacesSizeAndUsed, version, gc];

function registerProcessMetrics(registry: Registry): void {
  for (const collector of PROCESS_COLLECTORS) collector(registry, { prefix: METRIC_PREFIX });
}

/**
 * The harness metrics registry. Each daemon owns one (no global registry), so tests can
 * run several harness instances in one process.
 */
export class HarnessMetrics {
  readonly registry = new Registry();
  private readonly componentReady: Gauge;
  private readonly componentPhaseSince: Gauge;
  private readonly lastPhase = new Map<string, string>();

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false) {
      registerProcessMetrics(this.registry);
      registerEventLoopLag(this.registry, METRIC_PREFIX);
    }
    this.componentReady = new Gauge({
      name: METRIC.componentReady,
      help: 'Whether a harness component is ready (1) or not (0).',
      labelNames: ['component'],
      registers: [this.registry],
    });
    this.componentPhaseSince = new Gauge({
      name: METRIC.componentPhaseSince,
      help: 'When the component entered its current phase.',
      labelNames: ['component', 'phase'],
      registers: [this.registry],
    });
  }

  observeComponent(state: ComponentState): void {
    this.componentReady.set({ component: state.name }, state.ready ? 1 : 0);
    const previous = this.lastPhase.get(state.name);
    if (previous !== undefined && previous !== state.phase) this.componentPhaseSince.remove({ component: state.name, phase: previous });
    this.lastPhase.set(state.name, state.phase);
    this.componentPhaseSince.set({ component: state.name, phase: state.phase }, state.since.getTime() / 1000);
  }
}
