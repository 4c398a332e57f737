/**
 * What a check is and how a set of them runs: every check concurrently, each against its
 * own deadline and all against one overall deadline, so `mesh-harness check` ends in a
 * known time even when every remote black-holes. Checks are plain data plus a `run`
 * function; the effects they use are injected (see effects.ts), never imported.
 */

/** Areas in the order they are printed. */
export const AREAS = ['config', 'host', 'binaries', 'identity', 'network', 'control plane', 'daemon'] as const;
export type Area = (typeof AREAS)[number];

/** `warn` never fails the command; `skip` says why a check could not or need not run. */
export type Verdict = 'ok' | 'warn' | 'fail' | 'skip';

export interface Outcome {
  verdict: Verdict;
  /** What was found, in one line, naming values (paths, addresses, IDs). */
  message: string;
  /** What to do about it; given with every `fail` and `warn`. */
  hint?: string;
}

/** One line of a check that reports several lines (one per daemon component). */
export interface SubOutcome extends Outcome {
  subject: string;
  name: string;
}

export interface Check {
  /** Stable identifier, also the runbook anchor in docs/operations.md (`check-<id with dashes>`). */
  id: string;
  /** What the check is about when one id checks several things (a host name, a port). */
  subject?: string;
  area: Area;
  /** What should be true, as printed: "the Workload API serves an SVID for ...". */
  name: string;
  timeoutMs: number;
  /** What to do when the check does not finish in time. */
  timeoutHint: string;
  run(): Promise<Outcome | SubOutcome[]>;
}

export interface CheckResult extends Outcome {
  id: string;
  subject?: string;
  area: Area;
  name: string;
  durationMs: number;
}

export const ok = (message: string): Outcome => ({ verdict: 'ok', message });
export const warn = (message: string, hint: string): Outcome => ({ verdict: 'warn', message, hint });
export const fail = (message: string, hint: string): Outcome => ({ verdict: 'fail', message, hint });
export const skip = (message: string): Outcome => ({ verdict: 'skip', message });

/** The whole `check` ends within this much of starting its checks, whatever the network does. */
export const CHECK_BUDGET_MS = 5000;

export interface RunOptions {
  /** The overall bound; each check's own deadline is scaled by budgetMs / CHECK_BUDGET_MS. */
  budgetMs?: number;
  /** Milliseconds on a monotonic clock. */
  clock?: () => number;
}

/**
 * Starts every check at once and returns one promise per check, in plan order, so the
 * caller can print each as soon as it and those before it are done. A check that throws
 * fails with the error's message; one that outlives its deadline fails as timed out.
 */
export function runChecks(checks: readonly Check[], options: RunOptions = {}): Array<Promise<CheckResult[]>> {
  const clock = options.clock ?? (() => performance.now());
  const started = clock();
  const budget = options.budgetMs ?? CHECK_BUDGET_MS;
  const scale = budget / CHECK_BUDGET_MS;
  const deadline = started + budget;
  return checks.map(async (check) => {
    const begin = clock();
    const limit = Math.max(0, Math.min(check.timeoutMs * scale, deadline - begin));
    let outcome: Outcome | SubOutcome[];
    try {
      outcome = await withDeadline(check.run(), limit);
    } catch (err) {
      outcome = err instanceof DeadlineError
        ? fail(`did not finish within ${formatMs(limit)}`, check.timeoutHint)
        : fail(`the check itself failed: ${(err as Error).message ?? String(err)}`, 'this is a bug in mesh-harness check; please report it with the output of MESH_HARNESS_DEBUG=1 mesh-harness check');
    }
    const durationMs = Math.round(clock() - begin);
    const base = { id: check.id, area: check.area, durationMs };
    if (Array.isArray(outcome)) return outcome.map((sub) => ({ ...base, ...sub }));
    return [{ ...base, ...(check.subject !== undefined ? { subject: check.subject } : {}), name: check.name, ...outcome }];
  });
}

class DeadlineError extends Error {}

function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    // The timer is not unref'd: an abandoned probe (a black-holed DNS lookup) must not decide when we return.
    const timer = setTimeout(() => reject(new DeadlineError()), ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

export function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s` : `${Math.round(ms)} ms`;
}

/** Rejects after `ms` with an Error saying what did not answer; for effects shared by several checks. */
export function timeLimit<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(work, ms).catch((err: unknown) => {
    throw err instanceof DeadlineError ? Object.assign(new Error(`${what}: no answer within ${formatMs(ms)}`), { code: 'ETIMEDOUT' }) : err;
  });
}
