import { Registry, Gauge } from 'prom-client';
import type { ComponentState } from '../harness/component.ts';
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
      name: `${METRIC_PREFIX}component_ready`,
      help: 'Whether a harness component is ready (1) or not (0).',
      labelNames: ['component'],
      registers: [this.registry],
    });
    this.componentPhaseSince = new Gauge({
      name: `${METRIC_PREFIX}component_phase_since_timestamp_seconds`,
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
