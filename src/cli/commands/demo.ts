import { Playground } from '../../dev/playground.ts';
import { parseCommandArgs, type Command } from '../command.ts';

export const demoCommand: Command = {
  name: 'demo',
  usage: 'mesh-harness demo',
  async run(args, io) {
    parseCommandArgs(this, args, {});
    const playground = new Playground({ out: io.stdout });
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
