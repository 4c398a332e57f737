/**
 * Where the registration component learns whether the workload is ready. Today that is
 * the proxy's readiness; the probes component plugs in here by providing its own source
 * (proxy readiness and probe results combined). The component sends every change to the
 * registrar at once.
 */
import { EventEmitter } from 'node:events';
import type { Component, ComponentState } from '../harness/component.ts';
import { proxyOnlyState, type WorkloadState } from '../protocol/registration.ts';

export interface ReadinessSource {
  current(): WorkloadState;
  on(event: 'change', listener: (state: WorkloadState) => void): this;
  off(event: 'change', listener: (state: WorkloadState) => void): this;
}

/** Readiness from the proxy component's phase alone (no probes). */
export class ProxyReadiness extends EventEmitter implements ReadinessSource {
  private state: WorkloadState;

  constructor(private readonly proxy: Pick<Component, 'state' | 'on'>) {
    super();
    this.state = fromProxy(proxy.state());
    proxy.on('change', (next) => {
      const state = fromProxy(next);
      if (state.proxy_ready === this.state.proxy_ready && state.message === this.state.message) return;
      this.state = state;
      this.emit('change', state);
    });
  }

  current(): WorkloadState {
    return this.state;
  }
}

// The message names the phase only: it lands in the ExternalWorkload's Ready condition, and
// a message that changed with every retry countdown would cost an API write each time.
function fromProxy(proxy: ComponentState): WorkloadState {
  return proxyOnlyState(proxy.ready, proxy.ready ? '' : `the proxy is not ready (${proxy.phase})`);
}

/**
 * What the registration side needs of the probes component. Structural, so the two
 * components stay independent (the daemon wires them together).
 */
export interface ProbeVerdicts {
  readiness(): { ready: boolean; reason?: string; message: string };
  /** Every probe's verdict, refused cluster probes included as failing. */
  reportedProbes(): Array<{ name: string; success: boolean; message: string; observedUnixMs: number }>;
  on(event: 'readiness', listener: (readiness: { ready: boolean; reason?: string; message: string }) => void): unknown;
}

/**
 * Readiness from the proxy and the workload probes together: the proxy first (a workload
 * without its proxy takes no mesh traffic), then the probes. A change is emitted only
 * when the proxy's readiness changes or the probes' readiness transitions, never for a
 * probe check that changes nothing: each change is a status write on the API server.
 */
export class ProbedReadiness extends EventEmitter implements ReadinessSource {
  private proxyState: WorkloadState;
  private state: WorkloadState;

  constructor(
    proxy: Pick<Component, 'state' | 'on'>,
    private readonly probes: ProbeVerdicts,
  ) {
    super();
    this.proxyState = fromProxy(proxy.state());
    this.state = this.compose();
    proxy.on('change', (next) => {
      const state = fromProxy(next);
      if (state.proxy_ready === this.proxyState.proxy_ready && state.message === this.proxyState.message) return;
      this.proxyState = state;
      this.publish();
    });
    probes.on('readiness', () => this.publish());
  }

  current(): WorkloadState {
    // Fresh probe results for a hello or a reconnect; readiness itself only moves on transitions.
    this.state = this.compose();
    return this.state;
  }

  private publish(): void {
    this.state = this.compose();
    this.emit('change', this.state);
  }

  private compose(): WorkloadState {
    const readiness = this.probes.readiness();
    const probes = this.probes.reportedProbes().map((p) => ({ name: p.name, success: p.success, message: p.message, observed_unix_ms: p.observedUnixMs }));
    // The registrar reads readiness from the probe results. While the probes' readiness
    // is down with every probe passing (a recovery held by flap damping, or no verdict
    // yet), one entry says so, so both sides agree.
    if (!readiness.ready && probes.every((p) => p.success)) {
      probes.push({ name: 'workload', success: false, message: readiness.message, observed_unix_ms: Date.now() });
    }
    if (!this.proxyState.proxy_ready) return { ...this.proxyState, probes };
    if (!readiness.ready) return { proxy_ready: true, probes, reason: readiness.reason ?? 'ProbeFailed', message: readiness.message };
    return { proxy_ready: true, probes, reason: '', message: '' };
  }
}
