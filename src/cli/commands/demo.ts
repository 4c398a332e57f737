import { DEMO_STORE_CHOICES, type DemoStoreChoice } from '../../dev/demo-cluster.ts';
import { accessSync, constants, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { Playground } from '../../dev/playground.ts';
import { parseCommandArgs, type Command } from '../command.ts';
import { CliError, EXIT } from '../exit-codes.ts';

const IDENTITIES = ['auto', 'spire', 'dev'] as const;

/**
 * --proxy-binary: an absolute path to an executable the proxy user (nobody) can run; the
 * harness checks the rest (its environment contract) when it starts the proxy.
 */
function proxyExecutable(path: string, usage: string): string {
  if (!isAbsolute(path)) throw new CliError(`mesh-harness demo: --proxy-binary must be an absolute path, got "${path}"\nusage: ${usage}`, EXIT.USAGE);
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new Error('not a regular file');
    accessSync(path, constants.X_OK);
    if ((stat.mode & 0o001) === 0) throw new Error('not executable by others (the proxy runs as nobody): chmod o+x');
  } catch (err) {
    throw new CliError(`mesh-harness demo: --proxy-binary ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, EXIT.USAGE);
  }
  return path;
}

export const demoCommand: Command = {
  name: 'demo',
  usage: 'mesh-harness demo [--keep] [--store auto|kube|embedded] [--identity auto|spire|dev] [--proxy-binary PATH]',
  async run(args, io) {
    const { values } = parseCommandArgs(this, args, { keep: { type: 'boolean' }, store: { type: 'string', default: 'auto' }, identity: { type: 'string', default: 'auto' }, 'proxy-binary': { type: 'string' } });
    const store = values.store as DemoStoreChoice;
    if (!DEMO_STORE_CHOICES.includes(store)) throw new CliError(`mesh-harness demo: --store must be ${DEMO_STORE_CHOICES.join(', ')}; got "${values.store}"\nusage: ${this.usage}`, EXIT.USAGE);
    const identity = IDENTITIES.find((i) => i === values.identity);
    if (!identity) throw new CliError(`mesh-harness demo: --identity must be ${IDENTITIES.join(', ')}; got "${values.identity}"\nusage: ${this.usage}`, EXIT.USAGE);
    const proxyBinary = values['proxy-binary'] === undefined ? undefined : proxyExecutable(values['proxy-binary'], this.usage);
    const playground = new Playground({ out: io.stdout, keep: values.keep === true, store, identity, proxyBinary });
    // Handlers stay installed for the whole run (not `once`): a second Ctrl-C must not fall
    // through to the default action, nor to execa's signal-exit, which re-raises a signal
    // nobody else listens to and would kill the process in the middle of the cleanup.
    let interrupted = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (interrupted) {
        io.stdout.write(`\n${signal} again: still cleaning up, this takes a few seconds\n`);
        return;
      }
      interrupted = true;
      io.stdout.write(`\n${signal}: stopping the playground\n`);
      void playground.cleanup().finally(() => process.exit(130));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    return playground.run();
  },
};
