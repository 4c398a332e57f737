import { HarnessMetrics } from '../../admin/metrics.ts';
import { requiredForRun } from '../../config/schema.ts';
import { Harness } from '../../harness/daemon.ts';
import { createLogger } from '../../log/logger.ts';
import { createNotifier } from '../../systemd/notify.ts';
import { harnessVersion } from '../../util/version.ts';
import { hostProblems } from '../../config/host-checks.ts';
import type { Logger } from '../../log/logger.ts';
import { ConfigError, HarnessError } from '../../util/errors.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { configOptions, parseCommandArgs, type Command } from '../command.ts';
import { loadCommandConfig } from '../command-config.ts';

export const runCommand: Command = {
  name: 'run',
  usage: 'mesh-harness run [--config PATH] [--set section.key=value ...]',
  async run(args, io) {
    const { values } = parseCommandArgs(this, args, { ...configOptions });
    // The file decides what runs as root: one others could change is refused, at start and at every reload.
    const load = () => loadCommandConfig(values, io, { require: requiredForRun, requiredBy: 'mesh-harness run', requireTrustedFile: true });
    const loaded = load();
    const { config } = loaded;
    // Every host problem at once, before anything starts: one restart per problem is no way to learn them.
    const problems = await hostProblems(config, io.env);
    if (problems.length) throw new ConfigError(problems);
    const log = createLogger({ level: config.log.level, format: config.log.format });
    installLastResortHandlers(log);
    const metrics = new HarnessMetrics();
    let harness: Harness | undefined;
    // Loaded after the admin server listens: the component modules are most of start-up.
    const components = async () => {
      const { buildComponents } = await import('../../harness/wiring.ts');
      return buildComponents({ config, log, metrics, currentConfig: () => harness?.config ?? config });
    };
    const notifier = await createNotifier(io.env, log.child({ component: 'systemd' }));
    harness = new Harness({ config, configSource: loaded.file ?? 'defaults', log, metrics, components, version: harnessVersion(), notifier, reloadConfig: () => load().config });
    process.on('SIGHUP', () => {
      log.info({ signal: 'SIGHUP' }, 'reloading configuration');
      harness.reload().catch((err: Error) => log.error({ err: err.message }, 'reload failed'));
    });

    let signals = 0;
    const stopped = new Promise<number>((resolve) => {
      const onSignal = (signal: NodeJS.Signals) => {
        signals += 1;
        if (signals > 1) {
          log.warn({ signal }, 'second signal: exiting without finishing the shutdown');
          process.exit(EXIT.FAILURE);
        }
        log.info({ signal }, 'shutting down');
        harness.stop().then(
          () => resolve(EXIT.OK),
          (err: Error) => {
            log.error({ err: err.message }, 'shutdown failed');
            resolve(EXIT.FAILURE);
          },
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });

    log.info({ version: harnessVersion(), config: loaded.file ?? 'defaults' }, 'mesh-harness starting');
    try {
      await harness.start();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'startup failed');
      await harness.stop().catch(() => undefined);
      notifier.close();
      // A component that found a configuration problem (an unknown proxy user, say) is 78;
      // anything else that kept the daemon from starting is 69.
      if (err instanceof HarnessError) throw err;
      throw new CliError(`mesh-harness run: ${(err as Error).message}`, EXIT.UNAVAILABLE);
    }
    const code = await stopped;
    notifier.close();
    return code;
  },
};

/**
 * A throw nobody caught (in a gRPC callback, a timer) must not reach journald as a bare
 * stack, nor leave a daemon half alive: one structured `fatal` line, then exit non-zero so
 * systemd restarts the harness.
 */
function installLastResortHandlers(log: Logger): void {
  const die = (kind: string) => (err: unknown) => {
    try {
      log.fatal({ kind, err: err instanceof Error ? err.message : String(err), stack: err instanceof Error ? err.stack : undefined }, `${kind}: exiting`);
    } finally {
      process.exit(EXIT.FAILURE);
    }
  };
  process.on('uncaughtException', die('uncaught exception'));
  process.on('unhandledRejection', die('unhandled promise rejection'));
}
