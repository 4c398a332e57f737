/**
 * `mesh-registrar run [--config PATH]`: the cluster-side service. Exit codes as the
 * harness: 0 clean stop, 64 usage, 78 configuration, 69 a required service unavailable
 * (cannot listen, cannot reach the API server), 1 anything else.
 */
import { parseArgs } from 'node:util';
import { EXIT } from '../cli/exit-codes.ts';
import { write, type CommandIo } from '../cli/command.ts';
import { createLogger } from '../log/logger.ts';
import { harnessVersion } from '../util/version.ts';
import { loadRegistrarConfig, RegistrarConfigError } from './config.ts';
import { Registrar } from './registrar.ts';

const USAGE = `usage: mesh-registrar run [--config PATH] [--log-level LEVEL]
       mesh-registrar version

run       serve harness registrations and keep their ExternalWorkloads (see docs/registrar.md)
version   print the version`;

export async function registrarMain(argv: string[], io: CommandIo, signals: NodeJS.EventEmitter = process): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    write(command === undefined ? io.stderr : io.stdout, USAGE);
    return command === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (command === 'version' || command === '--version') {
    write(io.stdout, `mesh-registrar ${harnessVersion()}`);
    return EXIT.OK;
  }
  if (command !== 'run') {
    write(io.stderr, `mesh-registrar: unknown command "${command}"\n${USAGE}`);
    return EXIT.USAGE;
  }
  let values: { config?: string | undefined; 'log-level'?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    write(io.stderr, `mesh-registrar run: ${(err as Error).message}\n${USAGE}`);
    return EXIT.USAGE;
  }
  if (values.help) {
    write(io.stdout, USAGE);
    return EXIT.OK;
  }
  const levels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
  const level = (values['log-level'] ?? 'info') as (typeof levels)[number];
  if (!levels.includes(level)) {
    write(io.stderr, `mesh-registrar run: --log-level ${level} must be one of ${levels.join(', ')}`);
    return EXIT.USAGE;
  }
  let config;
  try {
    config = loadRegistrarConfig(values.config);
  } catch (err) {
    if (!(err instanceof RegistrarConfigError)) throw err;
    write(io.stderr, `mesh-registrar run: invalid configuration (${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}):`);
    for (const problem of err.problems) write(io.stderr, `  ${problem}`);
    return EXIT.CONFIG;
  }
  const log = createLogger({ level, format: 'auto', component: 'registrar' });
  const registrar = new Registrar({ config, log });
  try {
    await registrar.start();
  } catch (err) {
    write(io.stderr, `mesh-registrar run: ${(err as Error).message}`);
    if (io.env.MESH_REGISTRAR_DEBUG) write(io.stderr, (err as Error).stack ?? '');
    await registrar.stop(0).catch(() => undefined);
    return EXIT.UNAVAILABLE;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping: draining streams (GOAWAY)');
      resolve();
    };
    signals.once('SIGTERM', () => stop('SIGTERM'));
    signals.once('SIGINT', () => stop('SIGINT'));
  });
  await registrar.stop();
  log.info('stopped');
  return EXIT.OK;
}
