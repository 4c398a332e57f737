/**
 * dev-workload-api: the development Workload API server as a program, for the playground
 * (`mesh-harness demo` spawns it when no SPIRE is installed). See DEV_SERVER_USAGE.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { EXIT } from '../../cli/exit-codes.ts';
import { createLogger } from '../../log/logger.ts';
import { DevCa } from '../ca.ts';
import { DEV_SERVER_USAGE, DevServerUsageError, parseDevServerArgs, type DevServerOptions } from './options.ts';
import { DevWorkloadApiServer } from './server.ts';

function readFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw Object.assign(new Error(`${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`), { exitCode: EXIT.CONFIG });
  }
}

async function loadCa(options: DevServerOptions): Promise<DevCa> {
  if (!options.caCertFile || !options.caKeyFile) return DevCa.create({ trustDomain: options.trustDomain });
  return DevCa.fromPem({ certPem: readFile(options.caCertFile, '--ca-cert'), keyPem: readFile(options.caKeyFile, '--ca-key'), trustDomain: options.trustDomain });
}

async function main(): Promise<number> {
  let options: DevServerOptions | undefined;
  try {
    options = parseDevServerArgs(process.argv.slice(2), process.env);
  } catch (err) {
    if (!(err instanceof DevServerUsageError)) throw err;
    process.stderr.write(`dev-workload-api: ${err.message}\n${DEV_SERVER_USAGE}\n`);
    return EXIT.USAGE;
  }
  if (!options) {
    process.stdout.write(`${DEV_SERVER_USAGE}\n`);
    return EXIT.OK;
  }
  const log = createLogger({ level: options.logLevel, format: 'auto', component: 'dev-workload-api' });
  const ca = await loadCa(options);
  if (options.trustAnchorsOut) {
    // Written whole before the socket exists, so a reader that waits for the socket never sees half a file.
    writeFileSync(`${options.trustAnchorsOut}.tmp`, ca.bundlePem);
    renameSync(`${options.trustAnchorsOut}.tmp`, options.trustAnchorsOut);
  }
  const server = new DevWorkloadApiServer({
    socketPath: options.socketPath,
    ca,
    identities: options.spiffeIds.map((spiffeId) => ({ spiffeId })),
    ttlMs: options.ttlMs,
    ...(options.rotateEveryMs !== undefined ? { rotateEveryMs: options.rotateEveryMs } : {}),
    log,
  });
  await server.start();
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info({ signal }, 'stopping');
  await server.stop();
  return EXIT.OK;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`dev-workload-api: ${(err as Error).message ?? String(err)}\n`);
    process.exit((err as { exitCode?: number }).exitCode ?? EXIT.FAILURE);
  },
);
