import type { CheckContext, CheckResult } from './result.ts';
import { describeHandler, type Probe } from './spec.ts';

/** One probe's observable state, for /status, `mesh-harness status` and metrics. */
export interface ProbeStatus {
  name: string;
  source: Probe['source'];
  /** What is probed, such as `GET http://127.0.0.1:8080/healthz`. */
  target: string;
  /** The verdict after thresholds: whether this probe lets the workload be ready. */
  passing: boolean;
  /** The last check's own outcome; `unknown` before the first one. */
  lastResult: 'success' | 'failure' | 'unknown';
  /** What the last check saw (or what the probe waits for). */
  message: string;
  lastLatencyMs?: number;
  lastProbeAt?: string;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
  checks: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
}

export type RunCheck = (context: CheckContext) => Promise<CheckResult>;

export interface ProbeWorkerOptions {
  probe: Probe;
  run: RunCheck;
  /**
   * The verdict before the thresholds have spoken. Kubernetes starts readiness at
   * failure; a probe added while the workload is already ready starts at success, so
   * adding a probe to a group does not flap every VM's readiness.
   */
  initiallyPassing: boolean;
  /** Called after every check (the component recomputes readiness and metrics). */
  onResult: (status: ProbeStatus, result: CheckResult) => void;
}

/**
 * Runs one probe on its own timer, kubelet's way: first check after
 * `initialDelaySeconds`, then on a fixed `periodSeconds` schedule (a check that overran
 * its period skips the missed ticks rather than bunching up), each cut at
 * `timeoutSeconds`, and the verdict flips only after `successThreshold` successes or
 * `failureThreshold` failures in a row. Never more than one check in flight, so a hung
 * target costs one timeout per period and nothing else; other probes have their own timers.
 */
export class ProbeWorker {
  readonly probe: Probe;
  private readonly options: ProbeWorkerOptions;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: AbortController | undefined;
  private nextAt = 0;
  private stopped = false;
  private state: ProbeStatus;

  constructor(options: ProbeWorkerOptions) {
    this.options = options;
    this.probe = options.probe;
    const p = options.probe;
    this.state = {
      name: p.name,
      source: p.source,
      target: describeHandler(p.handler),
      passing: options.initiallyPassing,
      lastResult: 'unknown',
      message: p.initialDelaySeconds > 0 ? `first check after initialDelaySeconds (${p.initialDelaySeconds} s)` : 'first check pending',
      consecutiveSuccesses: 0,
      consecutiveFailures: 0,
      checks: 0,
      periodSeconds: p.periodSeconds,
      timeoutSeconds: p.timeoutSeconds,
      successThreshold: p.successThreshold,
      failureThreshold: p.failureThreshold,
    };
  }

  start(): void {
    this.nextAt = performance.now() + this.probe.initialDelaySeconds * 1000;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.inFlight?.abort();
  }

  status(): ProbeStatus {
    return { ...this.state };
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), Math.max(0, this.nextAt - performance.now()));
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    const abort = new AbortController();
    this.inFlight = abort;
    let result: CheckResult;
    try {
      result = await this.options.run({ timeoutMs: this.probe.timeoutSeconds * 1000, signal: abort.signal });
    } catch (err) {
      result = { ok: false, latencyMs: 0, message: `${this.state.target}: ${(err as Error).message}` };
    }
    this.inFlight = undefined;
    if (this.stopped) return;
    this.record(result);
    const period = this.probe.periodSeconds * 1000;
    const now = performance.now();
    this.nextAt += period;
    if (this.nextAt <= now) this.nextAt += (Math.floor((now - this.nextAt) / period) + 1) * period;
    this.schedule();
    this.options.onResult(this.status(), result);
  }

  private record(result: CheckResult): void {
    const s = this.state;
    s.checks += 1;
    s.lastResult = result.ok ? 'success' : 'failure';
    s.message = result.message;
    s.lastLatencyMs = result.latencyMs;
    s.lastProbeAt = new Date().toISOString();
    if (result.ok) {
      s.consecutiveSuccesses += 1;
      s.consecutiveFailures = 0;
      if (s.consecutiveSuccesses >= this.probe.successThreshold) s.passing = true;
    } else {
      s.consecutiveFailures += 1;
      s.consecutiveSuccesses = 0;
      if (s.consecutiveFailures >= this.probe.failureThreshold) s.passing = false;
    }
  }
}
