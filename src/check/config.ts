/**
 * Config area: the configuration loads (every problem listed, as `config validate` does)
 * and holds what `mesh-harness run` cannot start without.
 */
import { DEFAULT_CONFIG_PATH, type LoadedConfig } from '../config/load.ts';
import { envVarFor, requiredForRun } from '../config/schema.ts';
import { fail, ok, skip, warn, type Check } from './check.ts';

/** The configuration as `check` found it: loaded, or the loader's problems. */
export type ConfigLoad = { ok: true; loaded: LoadedConfig } | { ok: false; problems: string[] };

const CONFIG_TIMEOUT_HINT = 'reading the configuration cannot hang; please report this';

export function configChecks(load: ConfigLoad): Check[] {
  return [
    {
      id: 'config.valid',
      area: 'config',
      name: 'the configuration is valid',
      timeoutMs: 1000,
      timeoutHint: CONFIG_TIMEOUT_HINT,
      async run() {
        const source = load.ok ? (load.loaded.file ?? `no file at ${DEFAULT_CONFIG_PATH}; defaults and MESH_HARNESS_* environment`) : '';
        if (load.ok && load.loaded.warnings.length > 0) {
          return warn([`${source}; ${load.loaded.warnings.length} warning${load.loaded.warnings.length === 1 ? '' : 's'}:`, ...load.loaded.warnings.map((w) => `- ${w}`)].join('\n'), 'remove or correct the variables named above; a misspelt MESH_HARNESS_* variable is ignored');
        }
        if (load.ok) return ok(source);
        const count = `${load.problems.length} problem${load.problems.length === 1 ? '' : 's'}`;
        return fail([`${count}:`, ...load.problems.map((p) => `- ${p}`)].join('\n'), 'fix each setting named above (docs/configuration.md lists them all), then run mesh-harness config validate');
      },
    },
    {
      id: 'config.trusted',
      area: 'config',
      name: 'only root can change the configuration file',
      timeoutMs: 1000,
      timeoutHint: CONFIG_TIMEOUT_HINT,
      async run() {
        if (!load.ok) return skip('the configuration is invalid');
        if (!load.loaded.file) return skip('no configuration file');
        if (load.loaded.untrustedFile) return fail(load.loaded.untrustedFile, 'mesh-harness run refuses a configuration file any account but root could change; fix its owner and mode as shown');
        return ok(load.loaded.file);
      },
    },
    {
      id: 'config.complete',
      area: 'config',
      name: 'the settings mesh-harness run needs are set',
      timeoutMs: 1000,
      timeoutHint: CONFIG_TIMEOUT_HINT,
      async run() {
        if (!load.ok) return skip('the configuration is invalid');
        const config = load.loaded.config as unknown as Record<string, Record<string, unknown>>;
        const missing = requiredForRun.filter((path) => {
          const [section, key] = path.split('.') as [string, string];
          return config[section]![key] === '';
        });
        if (missing.length === 0) return ok(requiredForRun.join(', '));
        return fail(
          `not set: ${missing.join(', ')}`,
          `set ${missing.length === 1 ? 'it' : 'them'} in ${load.loaded.file ?? DEFAULT_CONFIG_PATH} or with ${missing.map(envVarFor).join(', ')}`,
        );
      },
    },
  ];
}
