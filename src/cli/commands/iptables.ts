import type { HarnessConfig } from '../../config/types.ts';
import { managedFamilies, resolveBackend } from '../../iptables/backend.ts';
import { cleanInstalled, describeClean } from '../../iptables/clean.ts';
import { desiredRulesets, resolveRenderInput } from '../../iptables/desired.ts';
import { describeDrift } from '../../iptables/drift.ts';
import { IptablesCommandError, IptablesUnavailableError } from '../../iptables/errors.ts';
import { NatTable } from '../../iptables/nat-table.ts';
import { execRunner, type CommandRunner } from '../../iptables/runner.ts';
import { renderRestore } from '../../iptables/ruleset.ts';
import { decideAfterStop } from '../../systemd/stop-post.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { configOptions, parseCommandArgs, write, type Command, type CommandIo } from '../command.ts';
import { loadCommandConfig } from '../command-config.ts';

const SUBCOMMANDS = ['render', 'apply', 'diff', 'clean'] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];

async function managedTables(config: HarnessConfig, runner: CommandRunner) {
  const input = await resolveRenderInput(config);
  const backend = await resolveBackend(runner, { backend: config.iptables.backend, ipv6: config.host.ipv6 });
  const desired = desiredRulesets(input, backend.families.map((f) => f.family));
  return { backend, tables: backend.families.map((tools) => ({ table: new NatTable(runner, tools), desired: desired.get(tools.family)! })) };
}

async function render(config: HarnessConfig, runner: CommandRunner, io: CommandIo): Promise<number> {
  const input = await resolveRenderInput(config);
  const families = managedFamilies(config.host.ipv6);
  for (const [family, ruleset] of desiredRulesets(input, families)) {
    write(io.stdout, `# ${family}: table nat, for ${family === 'ipv4' ? 'iptables' : 'ip6tables'}-restore --noflush`);
    io.stdout.write(renderRestore(ruleset));
  }
  return EXIT.OK;
}

async function apply(config: HarnessConfig, runner: CommandRunner, io: CommandIo): Promise<number> {
  const { backend, tables } = await managedTables(config, runner);
  for (const { table, desired } of tables) {
    const { drift } = await table.converge(desired);
    const where = `${table.family} (${backend.mode} backend)`;
    if (drift.length === 0) write(io.stdout, `${where}: already converged, nothing changed`);
    else write(io.stdout, [`${where}: applied, ${drift.length} change(s):`, ...drift.map((d) => `  ${describeDrift(d)}`)].join('\n'));
  }
  return EXIT.OK;
}

async function diff(config: HarnessConfig, runner: CommandRunner, io: CommandIo): Promise<number> {
  const { backend, tables } = await managedTables(config, runner);
  let drifted = false;
  for (const { table, desired } of tables) {
    const drift = await table.drift(desired);
    const where = `${table.family} (${backend.mode} backend)`;
    if (drift.length === 0) {
      write(io.stdout, `${where}: converged`);
      continue;
    }
    drifted = true;
    write(io.stdout, [`${where}: ${drift.length} difference(s):`, ...drift.map((d) => `  ${describeDrift(d)}`)].join('\n'));
  }
  if (drifted) write(io.stdout, 'run "mesh-harness iptables apply" to converge (the running daemon repairs drift by itself)');
  return drifted ? EXIT.FAILURE : EXIT.OK;
}

/**
 * Needs no configuration: it removes by the harness's marks, so it works when the file is
 * broken, from another version, or gone. `--unless-restarting UNIT` is the unit's
 * ExecStopPost (see systemd/stop-post.ts).
 */
async function clean(runner: CommandRunner, io: CommandIo, unit: string | undefined): Promise<number> {
  if (unit !== undefined) {
    const outcome = await decideAfterStop(unit, io.env, runner);
    if (outcome.keep) {
      write(io.stdout, `redirect rules left for the next start: ${outcome.reason}`);
      return EXIT.OK;
    }
    write(io.stdout, `removing the redirect rules: ${outcome.reason}`);
  }
  write(io.stdout, describeClean(await cleanInstalled(runner)).join('\n'));
  return EXIT.OK;
}

export const iptablesCommand: Command = {
  name: 'iptables',
  usage: 'mesh-harness iptables render|apply|diff [--config PATH] [--set section.key=value ...] | iptables clean [--unless-restarting UNIT]',
  async run(args, io) {
    const [sub, ...rest] = args;
    if (!SUBCOMMANDS.includes(sub as Subcommand)) {
      throw new CliError(`mesh-harness iptables: expected one of ${SUBCOMMANDS.join(', ')}${sub ? `, got "${sub}"` : ''}\nusage: ${this.usage}`, EXIT.USAGE);
    }
    const runner = execRunner({ env: io.env });
    try {
      if (sub === 'clean') {
        const { values } = parseCommandArgs(this, rest, { 'unless-restarting': { type: 'string' } });
        return await clean(runner, io, values['unless-restarting']);
      }
      const { values } = parseCommandArgs(this, rest, { ...configOptions });
      // Only the iptables and proxy settings matter here, so nothing is required: `{}` works.
      const { config } = loadCommandConfig(values, io);
      const action = { render, apply, diff }[sub as Exclude<Subcommand, 'clean'>];
      return await action(config, runner, io);
    } catch (err) {
      if (err instanceof IptablesUnavailableError) throw new CliError(`mesh-harness iptables ${sub}: ${err.message}`, EXIT.UNAVAILABLE);
      if (err instanceof IptablesCommandError) throw new CliError(`mesh-harness iptables ${sub}: ${err.message}`, EXIT.FAILURE);
      throw err;
    }
  },
};
