import { readTrustAnchorsPem } from '../../config/host-checks.ts';
import { requiredForRun } from '../../config/schema.ts';
import { formatEnvFile, renderProxyEnv } from '../../proxy/env.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { configOptions, parseCommandArgs, type Command } from '../command.ts';
import { loadCommandConfig } from '../command-config.ts';

export const proxyCommand: Command = {
  name: 'proxy',
  usage: 'mesh-harness proxy env [--config PATH] [--set section.key=value ...]',
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub !== 'env') throw new CliError(`mesh-harness proxy: expected "env"${sub ? `, got ${JSON.stringify(sub.slice(0, 40))}` : ''}\nusage: ${this.usage}`, EXIT.USAGE);
    const { values } = parseCommandArgs(this, rest, { ...configOptions });
    // The same configuration, decisions and trust anchors `run` gives the proxy, so running
    // the proxy by hand with this file reproduces what the harness does.
    const { config } = loadCommandConfig(values, io, { require: requiredForRun, requiredBy: 'mesh-harness proxy env' });
    const trustAnchorsPem = readTrustAnchorsPem(config.identity.trustAnchorsFile);
    io.stdout.write(formatEnvFile(renderProxyEnv(config, { workloadName: '', trustAnchorsPem })));
    return EXIT.OK;
  },
};
