/**
 * Exponential backoff with full jitter, the one implementation every retry loop in the
 * harness uses (child restarts, Workload API reconnects, registrar reconnects).
 *
 * Delay for attempt n (0-based) is a random value in [base*2^n / 2, base*2^n], capped at
 * `max`. Half-jitter rather than full jitter keeps a floor so a crash loop cannot spin,
 * while still spreading a fleet that failed at the same moment.
 */
export interface BackoffOptions {
  /** First delay in milliseconds. */
  baseMs: number;
  /** Largest delay in milliseconds. */
  maxMs: number;
  /** Source of randomness in [0, 1); injectable so tests are deterministic. */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly options: BackoffOptions) {
    if (options.baseMs <= 0 || options.maxMs < options.baseMs) {
      throw new RangeError(`backoff needs 0 < baseMs <= maxMs, got base ${options.baseMs} max ${options.maxMs}`);
    }
    this.random = options.random ?? Math.random;
  }

  /** Number of delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The next delay in milliseconds; each call moves one step further. */
  next(): number {
    const ceiling = Math.min(this.options.maxMs, this.options.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  reset(): void {
    this.attempt = 0;
  }
}
