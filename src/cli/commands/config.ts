import { showField, type LoadedConfig } from '../../config/load.ts';
import { HOST_CHECKS, hostProblems } from '../../config/host-checks.ts';
import { envVarFor, requiredForRun, schemaFields } from '../../config/schema.ts';
import type { Origin } from '../../config/types.ts';
import { ConfigError } from '../../util/errors.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { configOptions, parseCommandArgs, write, type Command } from '../command.ts';
import { loadCommandConfig } from '../command-config.ts';

function describeOrigin(origin: Origin | undefined): string {
  switch (origin?.source) {
    case 'file': return `file ${origin.path}`;
    case 'env': return `env ${origin.name}`;
    case 'flag': return 'flag --set';
    default: return 'default';
  }
}


export const configCommand: Command = {
  name: 'config',
  usage: 'mesh-harness config validate [PATH] [--file-only] | config show [--config PATH] [--set k=v] [--json]',
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub === 'validate') {
      const { values, positionals } = parseCommandArgs(this, rest, { ...configOptions, 'file-only': { type: 'boolean' } }, true);
      if (positionals.length > 1 || (positionals.length === 1 && values.config !== undefined)) {
        throw new CliError(`mesh-harness config validate: expected at most one file, got ${positionals.length + (values.config !== undefined ? 1 : 0)}\nusage: ${this.usage}`, EXIT.USAGE);
      }
      const path = positionals[0] ?? values.config;
      // What `run` checks before it starts anything, so a file that passes here is one run
      // accepts (an Ansible `validate:`, a package upgrade's check of the existing file).
      const loaded = loadCommandConfig({ ...values, config: path }, io, { require: requiredForRun, requiredBy: 'mesh-harness run' });
      const name = loaded.file ?? 'defaults (no config file)';
      if (values['file-only']) {
        write(io.stdout, [
          `${name}: valid (schema and the settings mesh-harness run requires)`,
          `not checked (--file-only; without it, or mesh-harness check${path ? ` --config ${path}` : ''}, on the target host):`,
          ...HOST_CHECKS.map((check) => `  - ${check}`),
        ].join('\n'));
        return EXIT.OK;
      }
      const problems = await hostProblems(loaded.config, io.env);
      if (problems.length) throw new ConfigError(problems);
      write(io.stdout, `${name}: valid; mesh-harness run checks nothing more before it starts (schema, required settings, and on this host: accounts, trust anchors, programs)`);
      return EXIT.OK;
    }
    if (sub === 'show') {
      const { values } = parseCommandArgs(this, rest, { ...configOptions, json: { type: 'boolean' } });
      const loaded: LoadedConfig = loadCommandConfig(values, io);
      const rows = schemaFields().map(([path, spec]) => {
        const [section, key] = path.split('.') as [string, string];
        const value = (loaded.config as unknown as Record<string, Record<string, unknown>>)[section]![key];
        const shown = showField(path, value);
        return { path, value: shown, display: spec.format === 'duration' ? String(shown) : JSON.stringify(shown), origin: describeOrigin(loaded.origins.get(path)), env: envVarFor(path) };
      });
      if (values.json) {
        write(io.stdout, JSON.stringify(Object.fromEntries(rows.map((r) => [r.path, { value: r.value, source: r.origin }])), null, 2));
      } else {
        const width = Math.max(...rows.map((r) => r.path.length));
        for (const r of rows) write(io.stdout, `${r.path.padEnd(width)}  ${r.display}  (${r.origin})`);
      }
      return EXIT.OK;
    }
    throw new CliError(`mesh-harness config: expected "validate" or "show"\nusage: ${this.usage}`, EXIT.USAGE);
  },
};
