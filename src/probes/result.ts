/** What one probe check saw, in words fit for an ExternalWorkload condition. */
export interface CheckResult {
  ok: boolean;
  /** `<what was probed>: <what it saw> after <n> ms`, such as `GET http://127.0.0.1:8080/healthz: 503 after 12 ms`. */
  message: string;
  latencyMs: number;
}

/** How long a check may take and how it is cancelled (probe removed, harness stopping). */
export interface CheckContext {
  timeoutMs: number;
  signal: AbortSignal;
}

/** Milliseconds since `start` (a performance.now() reading), rounded for messages. */
export function elapsedMs(start: number): number {
  return Math.round(performance.now() - start);
}

export function timeoutText(timeoutMs: number): string {
  return `no answer within ${timeoutMs / 1000} s (timeoutSeconds)`;
}

const ERRNO_WORDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EADDRNOTAVAIL: 'address not available',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
};

/** A socket error in a few words: `connection refused`, not a stack. */
export function networkErrorText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code && ERRNO_WORDS[code]) return ERRNO_WORDS[code]!;
  return (err as Error).message || String(err);
}

/** Collapses whitespace and cuts text to `max` characters: output and bodies stay short in messages. */
export function truncate(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}... (truncated)` : flat;
}

/** A signal that fires on the check's timeout or when the caller aborts, whichever comes first. */
export function deadlineSignal(context: CheckContext): AbortSignal {
  return AbortSignal.any([context.signal, AbortSignal.timeout(context.timeoutMs)]);
}
