import pino, { type DestinationStream, type Logger, type LevelWithSilent } from 'pino';
import type PinoPretty from 'pino-pretty';
import { priorityOfLevel } from './journal.ts';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: LevelWithSilent;
  /** `auto`: pretty on a TTY, JSON otherwise (journald keeps JSON lines intact). */
  format: 'auto' | 'json' | 'pretty';
  /** Where lines go; stderr by default so command output on stdout stays clean. */
  destination?: NodeJS.WritableStream & { fd?: number };
  /** `component` of the root logger. */
  component?: string;
  /** Prefix each JSON line with its syslog priority (`<3>` for error): the destination is journald's stream. */
  syslogPriority?: boolean;
}

/**
 * A pino destination that puts the line's syslog priority in front of it. pino hands the
 * level of each line to a destination that asks for it (the metadata symbol), as its own
 * multistream does.
 */
function prioritised(inner: DestinationStream): DestinationStream {
  const stream = {
    [pino.symbols.needsMetadataGsym]: true,
    lastLevel: 30,
    write(line: string) {
      inner.write(`<${priorityOfLevel(stream.lastLevel)}>${line}`);
    },
  };
  return stream;
}

/**
 * The harness logger. Every line carries a `component` field: children are made with
 * `logger.child({ component: 'iptables' })`. Pretty output is rendered in-process (no
 * worker thread), so it works from the single-file bundle.
 */
export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? process.stderr;
  const isTty = Boolean((destination as NodeJS.WriteStream).isTTY);
  const usePretty = options.format === 'pretty' || (options.format === 'auto' && isTty);
  const rootComponent = options.component ?? 'harness';
  // `component` comes from the child's bindings when it has one; a base field would be
  // written as well, giving lines with the key twice.
  const opts = {
    level: options.level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: (_merge: object, _level: number, logger: Logger) => ('component' in logger.bindings() ? {} : { component: rootComponent }),
  };
  if (usePretty) {
    // Loaded only for a terminal: the daemon under systemd writes JSON and never pays the
    // few megabytes pino-pretty and its dependencies take once evaluated. (A require, not
    // an import: createLogger is synchronous; the bundle evaluates the module on this call.)
    const pretty = (require('pino-pretty') as { default: typeof PinoPretty }).default;
    return pino(opts, pretty({ destination, sync: true, colorize: isTty, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', messageFormat: '[{component}] {msg}' }));
  }
  const fd = (destination as { fd?: number }).fd;
  const stream: DestinationStream = typeof fd === 'number' ? pino.destination({ fd, sync: true }) : destination;
  return pino(opts, options.syslogPriority ? prioritised(stream) : stream);
}

/** A logger that drops everything, for tests and one-shot commands that print themselves. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
