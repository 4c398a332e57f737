import type { Line } from './lines.ts';

export type PinoLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface ChildLogRecord {
  level: PinoLevel;
  message: string;
  /** The child's own structured fields (target, spans, caller, ...), without level/time/message. */
  fields?: Record<string, unknown>;
}

const LEVELS: Record<string, PinoLevel> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  err: 'error',
  fatal: 'fatal',
  panic: 'fatal',
  critical: 'fatal',
  crit: 'fatal',
};

/** Keys that pino writes itself or that become the message. */
const CONSUMED = new Set(['level', 'msg', 'message', 'time', 'timestamp', 'ts']);

/**
 * Turns one line of child output into a harness log record. JSON lines keep their own
 * level: linkerd2-proxy writes `"level":"INFO"` with the text in `fields.message`, SPIRE
 * (logrus) writes `"level":"info"` with `msg`. Anything else is plain text: info on
 * stdout, warn on stderr (a child writing to stderr usually has something to complain
 * about).
 */
export function parseChildLine(line: Line, stream: 'stdout' | 'stderr'): ChildLogRecord {
  const fallback: ChildLogRecord = { level: stream === 'stderr' ? 'warn' : 'info', message: line.text };
  const text = line.text.trim();
  if (line.truncated || !text.startsWith('{')) return fallback;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return fallback;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fallback;
  const record = parsed as Record<string, unknown>;
  const level = typeof record.level === 'string' ? LEVELS[record.level.toLowerCase()] : undefined;
  if (!level) return fallback;

  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) if (!CONSUMED.has(key)) fields[key] = value;
  let message = typeof record.msg === 'string' ? record.msg : typeof record.message === 'string' ? record.message : undefined;
  const nested = fields.fields;
  if (message === undefined && typeof nested === 'object' && nested !== null && typeof (nested as Record<string, unknown>).message === 'string') {
    const { message: nestedMessage, ...rest } = nested as Record<string, unknown>;
    message = nestedMessage as string;
    if (Object.keys(rest).length) fields.fields = rest;
    else delete fields.fields;
  }
  return { level, message: message ?? '', ...(Object.keys(fields).length ? { fields } : {}) };
}
