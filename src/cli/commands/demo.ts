import { Playground } from '../../dev/playground.ts';
import { parseCommandArgs, type Command } from '../command.ts';
import { CliError, EXIT } from '../exit-codes.ts';

const IDENTITIES = ['auto', 'spire', 'dev'] as const;

export const demoCommand: Command = {
  name: 'demo',
  usage: 'mesh-harness demo [--keep] [--identity auto|spire|dev]',
  async run(args, io) {
    const { values } = parseCommandArgs(this, args, { keep: { type: 'boolean' }, identity: { type: 'string', default: 'auto' } });
    const identity = IDENTITIES.find((i) => i === values.identity);
    if (!identity) throw new CliError(`mesh-harness demo: --identity must be auto, spire or dev, got "${values.identity}"\nusage: ${this.usage}`, EXIT.USAGE);
    const playground = new Playground({ out: io.stdout, keep: values.keep === true, identity });
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
