import { DEMO_STORE_CHOICES, type DemoStoreChoice } from '../../dev/demo-cluster.ts';
import { Playground } from '../../dev/playground.ts';
import { parseCommandArgs, type Command } from '../command.ts';
import { CliError, EXIT } from '../exit-codes.ts';

const IDENTITIES = ['auto', 'spire', 'dev'] as const;

export const demoCommand: Command = {
  name: 'demo',
  usage: 'mesh-harness demo [--keep] [--store auto|kube|embedded] [--identity auto|spire|dev]',
  async run(args, io) {
    const { values } = parseCommandArgs(this, args, { keep: { type: 'boolean' }, store: { type: 'string', default: 'auto' }, identity: { type: 'string', default: 'auto' } });
    const store = values.store as DemoStoreChoice;
    if (!DEMO_STORE_CHOICES.includes(store)) throw new CliError(`mesh-harness demo: --store must be ${DEMO_STORE_CHOICES.join(', ')}; got "${values.store}"\nusage: ${this.usage}`, EXIT.USAGE);
    const identity = IDENTITIES.find((i) => i === values.identity);
    if (!identity) throw new CliError(`mesh-harness demo: --identity must be ${IDENTITIES.join(', ')}; got "${values.identity}"\nusage: ${this.usage}`, EXIT.USAGE);
    const playground = new Playground({ out: io.stdout, keep: values.keep === true, store, identity });
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
