import { EventEmitter } from 'node:events';
import type { HarnessConfig } from '../config/types.ts';
import type { Logger } from '../log/logger.ts';

/**
 * The component framework: phases, observable state, and the base class every component
 * (identity, iptables, proxy, spire-agent, the configuration) extends. A leaf module:
 * components import it, it imports none of them.
 *
 * Each phase means the same thing in every component (docs/operations.md lists them):
 * - `Pending`: not started, or waiting for something outside itself (an SVID, the proxy's
 *   first readiness); it keeps waiting on its own.
 * - `Starting`: its first attempt is under way.
 * - `Ready`: doing its job. With `Disabled`, the only phases that count as ready.
 * - `Degraded`: something is wrong and it keeps retrying by itself (a lost stream, a child
 *   that exited and is restarted, rules another program keeps changing).
 * - `CrashLoop`: a child keeps failing quickly; it is still retried, at the slowest pace.
 * - `Failed`: it gave up and does not retry; only a reload or a restart (after the operator
 *   fixed the cause) brings it back.
 * - `Stopping`, `Stopped`: on the way out, and out.
 * - `Disabled`: switched off in the configuration.
 */
export type Phase = 'Pending' | 'Starting' | 'Ready' | 'Degraded' | 'Failed' | 'CrashLoop' | 'Stopping' | 'Stopped' | 'Disabled';

export interface ComponentState {
  name: string;
  phase: Phase;
  /** Whether this component lets the harness report ready. Disabled components count as ready. */
  ready: boolean;
  /** When the phase last changed. */
  since: Date;
  /** What the component is doing or waiting for, in a few words (systemd STATUS=). */
  message: string;
  lastError?: string;
  /** Component-specific facts for /status (SVID expiry, child PID, drift counts, ...). */
  detail?: Record<string, unknown>;
}

/** A reconciler the daemon starts in order and stops in reverse order. */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  state(): ComponentState;
  /**
   * SIGHUP, first half: check that the new, already validated configuration can be applied
   * (accounts, programs, files) without changing anything, and return what `commit` needs.
   * Throws, with a message for the operator, when it cannot: then no component changes.
   */
  prepare?(config: HarnessConfig): Promise<PreparedUpdate>;
  on(event: 'change', listener: (state: ComponentState) => void): this;
  off(event: 'change', listener: (state: ComponentState) => void): this;
}

/** A reload that every component has prepared; committed only when all prepared. */
export interface PreparedUpdate {
  /** Applies the prepared configuration (only what changed). */
  commit(): Promise<void>;
}

export interface StateUpdate {
  message?: string;
  lastError?: string | undefined;
  detail?: Record<string, unknown>;
}

const READY_PHASES: ReadonlySet<Phase> = new Set(['Ready', 'Disabled']);

/**
 * Holds a component's observable state. `since` moves only when the phase changes, and a
 * phase change is logged once (not on every retry), so logs stay readable at 3 a.m.
 */
export abstract class BaseComponent extends EventEmitter implements Component {
  private snapshot: ComponentState;

  protected constructor(
    readonly name: string,
    protected readonly log: Logger,
    protected readonly now: () => Date = () => new Date(),
  ) {
    super();
    this.snapshot = { name, phase: 'Pending', ready: false, since: now(), message: 'not started' };
  }

  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;

  state(): ComponentState {
    return { ...this.snapshot, ...(this.snapshot.detail ? { detail: { ...this.snapshot.detail } } : {}) };
  }

  protected setState(phase: Phase, update: StateUpdate = {}): void {
    const previous = this.snapshot;
    const phaseChanged = previous.phase !== phase;
    const next: ComponentState = {
      name: this.name,
      phase,
      ready: READY_PHASES.has(phase),
      since: phaseChanged ? this.now() : previous.since,
      message: update.message ?? previous.message,
      ...('lastError' in update ? (update.lastError === undefined ? {} : { lastError: update.lastError }) : previous.lastError ? { lastError: previous.lastError } : {}),
      ...(update.detail ? { detail: { ...previous.detail, ...update.detail } } : previous.detail ? { detail: previous.detail } : {}),
    };
    this.snapshot = next;
    if (phaseChanged) {
      const fields = { phase, from: previous.phase, ...(next.lastError && phase !== 'Ready' ? { error: next.lastError } : {}) };
      if (phase === 'Failed' || phase === 'CrashLoop') this.log.error(fields, `${this.name}: ${next.message}`);
      else if (phase === 'Degraded') this.log.warn(fields, `${this.name}: ${next.message}`);
      else this.log.info(fields, `${this.name}: ${next.message}`);
    }
    if (phaseChanged || previous.message !== next.message || previous.lastError !== next.lastError || update.detail) {
      this.emit('change', this.state());
    }
  }
}

/** The harness is ready when every component is. */
export function allReady(states: ComponentState[]): boolean {
  return states.length > 0 && states.every((s) => s.ready);
}
