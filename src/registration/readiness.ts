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
