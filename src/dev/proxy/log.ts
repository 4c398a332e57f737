import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogSettings } from './config.ts';

/**
 * Logs like linkerd2-proxy: to stdout, JSON lines carrying an upper-case string `level`
 * (what the harness's supervisor parses for the real proxy too) or plain text.
 */
export function devProxyLogger(settings: LogSettings): Logger {
  const base = { target: 'mesh_dev_proxy' };
  if (settings.format === 'plain') {
    return pino({ level: settings.level, base }, pretty({ destination: 1, sync: true, colorize: false, ignore: 'pid,hostname,target', translateTime: 'SYS:HH:MM:ss.l' }));
  }
  return pino(
    {
      level: settings.level,
      base,
      messageKey: 'message',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label.toUpperCase() }) },
    },
    pino.destination({ fd: 1, sync: true }),
  );
}
