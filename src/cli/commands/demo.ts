import { Playground } from '../../dev/playground.ts';
import { parseCommandArgs, type Command } from '../command.ts';

export const demoCommand: Command = {
  name: 'demo',
  usage: 'mesh-harness demo',
  async run(args, io) {
    parseCommandArgs(this, args, {});
    const playground = new Playground({ out: io.stdout });
    const interrupted = (signal: NodeJS.Signals) => {
      io.stdout.write(`\n${signal}: stopping the playground\n`);
      playground.cleanup().finally(() => process.exit(130));
    };
    process.once('SIGINT', interrupted);
    process.once('SIGTERM', interrupted);
    return playground.run();
  },
};
