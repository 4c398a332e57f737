import { Registry, collectDefaultMetrics, Gauge } from 'prom-client';
import type { ComponentState } from '../harness/component.ts';

export const METRIC_PREFIX = 'mesh_harness_';

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
    // The event-loop-lag histogram samples on a libuv timer; at prom-client's 10 ms default
    // that timer alone woke the idle daemon ~100 times a second. 100 ms resolution is plenty
    // for a node agent (a blocked loop is caught by the systemd watchdog).
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX, eventLoopMonitoringPrecision: 100 });
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
