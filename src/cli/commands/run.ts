import { HarnessMetrics } from '../../admin/metrics.ts';
import { requiredForRun, schemaSections } from '../../config/schema.ts';
import { Harness } from '../../harness/daemon.ts';
import { createLogger } from '../../log/logger.ts';
import { createNotifier } from '../../systemd/notify.ts';
import { harnessVersion } from '../../util/version.ts';
import { hostProblems } from '../../config/host-checks.ts';
import type { Logger } from '../../log/logger.ts';
import { ConfigError, HarnessError } from '../../util/errors.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { configOptions, parseCommandArgs, report, type Command, type CommandIo } from '../command.ts';
import { isJournalStream, PRIORITY } from '../../log/journal.ts';
import { adminClientHost, fetchAdminStatus } from '../../admin/client.ts';
import type { LoadedConfig } from '../../config/load.ts';
import type { HarnessConfig } from '../../config/types.ts';
import { cleanInstalled, describeClean } from '../../iptables/clean.ts';
import { execRunner } from '../../iptables/runner.ts';
import { loadCommandConfig } from '../command-config.ts';

export const runCommand: Command = {
  name: 'run',
  usage: 'mesh-harness run [--config PATH] [--set section.key=value ...]',
  async run(args, io) {
    const { values } = parseCommandArgs(this, args, { ...configOptions });
    // The file decides what runs as root: one others could change is refused, at start and at every reload.
    const load = () => loadCommandConfig(values, io, { require: requiredForRun, requiredBy: 'mesh-harness run', requireTrustedFile: true });
    let loaded: LoadedConfig;
    try {
      loaded = load();
      // Every host problem at once, before anything starts: one restart per problem is no way to learn them.
      const problems = await hostProblems(loaded.config, io.env);
      if (problems.length) throw new ConfigError(problems);
    } catch (err) {
      await removeLeftoverRules(io, DEFAULT_ADMIN);
      throw err;
    }
    const { config } = loaded;
    const log = createLogger({ level: config.log.level, format: config.log.format, syslogPriority: isJournalStream(io.env) });
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
      await removeLeftoverRules(io, config.admin);
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

const DEFAULT_ADMIN = { address: String(schemaSections.admin.address.default), port: Number(schemaSections.admin.port.default) };

/**
 * A run that cannot start leaves no jumps behind, its own or an earlier run's (kept by
 * iptables.onStop=keep): without a proxy they send every outbound TCP connection to a port
 * where nothing listens. They are removed by their marks, which needs no valid
 * configuration. Left alone when another harness answers on the admin port: they are its
 * rules. Best effort: the start's own error is what the operator must see.
 */
async function removeLeftoverRules(io: CommandIo, admin: Pick<HarnessConfig['admin'], 'address' | 'port'>): Promise<void> {
  const host = adminClientHost(admin);
  const running = await fetchAdminStatus(host, admin.port, 1000).catch(() => undefined);
  if (running) {
    report(io, PRIORITY.notice, `mesh-harness run: another mesh-harness (pid ${running.pid}) answers on ${host}:${admin.port}; its redirect rules were left alone`);
    return;
  }
  try {
    const results = await cleanInstalled(execRunner({ env: io.env }));
    if (results.some((r) => r.removed.length > 0)) {
      report(io, PRIORITY.notice, ['mesh-harness run: removed the redirect rules left in place, since no proxy will run:', ...describeClean(results)].join('\n'));
    }
  } catch (err) {
    report(io, PRIORITY.err, `mesh-harness run: could not remove leftover redirect rules (${(err as Error).message}); run: mesh-harness iptables clean`);
  }
}

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
