import type { LoadedConfig } from '../../config/load.ts';
import { envVarFor, schemaFields } from '../../config/schema.ts';
import type { Origin } from '../../config/types.ts';
import { formatDuration } from '../../util/duration.ts';
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

function displayValue(value: unknown, format: unknown): string {
  if (format === 'duration' && typeof value === 'number') return formatDuration(value);
  return JSON.stringify(value);
}

export const configCommand: Command = {
  name: 'config',
  usage: 'mesh-harness config validate [PATH] | config show [--config PATH] [--set k=v] [--json]',
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub === 'validate') {
      const { values, positionals } = parseCommandArgs(this, rest, { ...configOptions }, true);
      const path = positionals[0] ?? values.config;
      const loaded = loadCommandConfig({ ...values, config: path }, io);
      // Only the settings: whether this host can run them is what check is for.
      write(io.stdout, `${loaded.file ?? 'defaults (no config file)'}: valid (settings only; mesh-harness check${path ? ` --config ${path}` : ''} tests this host against them)`);
      return EXIT.OK;
    }
    if (sub === 'show') {
      const { values } = parseCommandArgs(this, rest, { ...configOptions, json: { type: 'boolean' } });
      const loaded: LoadedConfig = loadCommandConfig(values, io);
      const rows = schemaFields().map(([path, spec]) => {
        const [section, key] = path.split('.') as [string, string];
        const value = (loaded.config as unknown as Record<string, Record<string, unknown>>)[section]![key];
        return { path, value, display: displayValue(value, spec.format), origin: describeOrigin(loaded.origins.get(path)), env: envVarFor(path) };
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
