/**
 * Log priorities for journald. Under systemd, stdout and stderr are a stream to journald,
 * which files every line at the unit's default priority (6, info) unless the line starts
 * with a syslog priority prefix such as `<3>` (SyslogLevelPrefix=, on by default), which
 * it strips. With the prefix, `journalctl -p err -u mesh-harness` finds the errors and
 * the JSON content of each line is unchanged.
 */
import { fstatSync } from 'node:fs';

/** syslog priorities (sd-daemon.h's SD_CRIT ... SD_DEBUG). */
export const PRIORITY = { crit: 2, err: 3, warning: 4, notice: 5, info: 6, debug: 7 } as const;

/** pino's numeric level to the syslog priority: fatal crit, error err, warn warning, info info, debug and trace debug. */
export function priorityOfLevel(level: number): number {
  if (level >= 60) return PRIORITY.crit;
  if (level >= 50) return PRIORITY.err;
  if (level >= 40) return PRIORITY.warning;
  if (level >= 30) return PRIORITY.info;
  return PRIORITY.debug;
}

/**
 * Whether file descriptor `fd` is the journal stream systemd connected: JOURNAL_STREAM
 * ("device:inode") names it, and it must still be that very file (a shell redirect in a
 * unit's command would make it something else, where a prefix is noise).
 */
export function isJournalStream(env: NodeJS.ProcessEnv, fd = 2): boolean {
  const expected = env.JOURNAL_STREAM;
  if (!expected || !/^\d+:\d+$/.test(expected)) return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return `${st.dev}:${st.ino}` === expected;
  } catch {
    return false;
  }
}

/** Every line of `text` with the priority prefix. */
export function withPriority(text: string, priority: number): string {
  return text
    .split('\n')
    .map((line, i, lines) => (line === '' && i === lines.length - 1 ? line : `<${priority}>${line}`))
    .join('\n');
}
