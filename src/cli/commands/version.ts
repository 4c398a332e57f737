import { harnessVersion } from '../../util/version.ts';
import { write, type Command } from '../command.ts';

export const versionCommand: Command = {
  name: 'version',
  summary: 'print the version',
  usage: 'mesh-harness version [--json]',
  async run(args, io) {
    const json = args.includes('--json');
    const info = { 'mesh-harness': harnessVersion(), node: process.versions.node };
    write(io.stdout, json ? JSON.stringify(info) : `mesh-harness ${info['mesh-harness']} (node ${info.node})`);
    return 0;
  },
};
