import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isJournalStream, withPriority } from '../log/journal.ts';
import { CliError, EXIT } from './exit-codes.ts';

export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

/** A subcommand: `run` returns the exit code. */
export interface Command {
  name: string;
  usage: string;
  run(args: string[], io: CommandIo): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command that reads configuration accepts. */
export const configOptions = {
  config: { type: 'string', short: 'c' },
  set: { type: 'string', multiple: true },
} as const satisfies Options;

/** parseArgs with usage errors turned into exit 64 and a pointer to --help. */
export function parseCommandArgs<T extends Options>(command: Pick<Command, 'name' | 'usage'>, args: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (err) {
    throw new CliError(`mesh-harness ${command.name}: ${(err as Error).message}\nusage: ${command.usage}`, EXIT.USAGE);
  }
}

export function write(stream: NodeJS.WritableStream, text: string): void {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}


/**
 * A message for the operator on stderr, at a syslog priority (PRIORITY in log/journal.ts):
 * under systemd journald files it there, so `journalctl -p err` shows errors.
 */
export function report(io: Pick<CommandIo, 'stderr' | 'env'>, priority: number, text: string): void {
  write(io.stderr, isJournalStream(io.env) ? withPriority(text, priority) : text);
}
