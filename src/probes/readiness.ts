/**
 * The workload's readiness as the probes see it, and the rule that keeps a flapping
 * probe from becoming a write storm on the API server.
 *
 * Only transitions leave this module, and they are bounded three ways:
 * 1. per probe, the thresholds: a verdict flips only after `failureThreshold` failures or
 *    `successThreshold` successes in a row, so at most one flip per probe per
 *    min(threshold) x periodSeconds;
 * 2. going not ready is never delayed (traffic to a broken workload must stop now);
 * 3. coming back is held after repeated flaps (flap damping, as BGP does for routes):
 *    the first recovery is immediate, each further not-ready transition within
 *    `quietMs` of the last recovery doubles the hold, from `holdBaseMs` up to
 *    `holdMaxMs`; `quietMs` of continuous readiness forgets the history. A probe that
 *    flaps forever therefore costs at most two transitions per `holdMaxMs`.
 */

export type ReadinessReason = 'ProbeFailed' | 'ProbeRefused' | 'ProbePending';

export interface Readiness {
  ready: boolean;
  /** Why not ready; absent when ready. */
  reason?: ReadinessReason;
  /** Names the probe and what it saw, such as `GET http://127.0.0.1:8080/healthz: 503 after 12 ms`. */
  message: string;
  /** When this readiness was reached (for a held recovery: when the hold ended). */
  since: Date;
}

export interface Verdict {
  ready: boolean;
  reason?: ReadinessReason;
  message: string;
}

export interface FlapDamping {
  holdBaseMs: number;
  holdMaxMs: number;
  quietMs: number;
}

export const DEFAULT_FLAP_DAMPING: FlapDamping = { holdBaseMs: 10_000, holdMaxMs: 300_000, quietMs: 600_000 };

export interface ReadinessGateOptions {
  damping?: FlapDamping;
  /** Called once per transition, never for a mere change of message. */
  onTransition: (readiness: Readiness) => void;
  now?: () => number;
}

export class ReadinessGate {
  private readonly damping: FlapDamping;
  private readonly now: () => number;
  private current: Readiness;
  /** The latest verdict, which a held recovery is re-checked against when its hold ends. */
  private latest: Verdict;
  /** Not-ready transitions since readiness was last quiet. */
  private flaps = 0;
  private readySince: number | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  private holdUntil = 0;

  constructor(private readonly options: ReadinessGateOptions, initial: Verdict) {
    this.damping = options.damping ?? DEFAULT_FLAP_DAMPING;
    this.now = options.now ?? Date.now;
    this.latest = initial;
    this.current = { ...initial, since: new Date(this.now()) };
    if (initial.ready) this.readySince = this.now();
  }

  readiness(): Readiness {
    return { ...this.current };
  }

  /** Milliseconds a recovery is still held for; 0 when none is. */
  heldForMs(): number {
    return this.holdTimer ? Math.max(0, this.holdUntil - this.now()) : 0;
  }

  flapCount(): number {
    return this.flaps;
  }

  /** The verdict changed (or only its message did). Emits a transition when readiness flips. */
  update(verdict: Verdict): void {
    this.latest = verdict;
    const now = this.now();
    if (verdict.ready === this.current.ready) {
      // Same side: keep the message fresh for status, without a transition.
      if (!verdict.ready) this.current = { ...this.current, reason: verdict.reason, message: verdict.message };
      else this.current = { ...this.current, message: verdict.message };
      this.cancelHold();
      return;
    }
    if (!verdict.ready) {
      this.cancelHold();
      if (this.readySince !== undefined && now - this.readySince >= this.damping.quietMs) this.flaps = 0;
      this.flaps += 1;
      this.readySince = undefined;
      this.transition(verdict, now);
      return;
    }
    const hold = this.flaps <= 1 ? 0 : Math.min(this.damping.holdMaxMs, this.damping.holdBaseMs * 2 ** (this.flaps - 2));
    const lastChange = this.current.since.getTime();
    const until = lastChange + hold;
    if (until <= now) {
      this.cancelHold();
      this.readySince = now;
      this.transition(verdict, now);
      return;
    }
    if (!this.holdTimer) {
      this.holdUntil = until;
      this.holdTimer = setTimeout(() => {
        this.holdTimer = undefined;
        if (this.latest.ready && !this.current.ready) {
          this.readySince = this.now();
          this.transition(this.latest, this.now());
        }
      }, until - now);
    }
    this.current = { ...this.current, message: `${verdict.message}; back to ready held until ${new Date(until).toISOString()} after ${this.flaps} flaps` };
  }

  stop(): void {
    this.cancelHold();
  }

  private cancelHold(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
  }

  private transition(verdict: Verdict, now: number): void {
    this.current = { ready: verdict.ready, ...(verdict.ready ? {} : { reason: verdict.reason }), message: verdict.message, since: new Date(now) };
    this.options.onTransition(this.readiness());
  }
}
