import { loadConfig, type LoadedConfig, type LoadOptions } from '../config/load.ts';
import { PRIORITY } from '../log/journal.ts';
import { report, type CommandIo } from './command.ts';

/**
 * Loads the configuration named by a command's --config and --set options; warnings go to
 * stderr. A file others could change is refused with `requireTrustedFile` (run), and
 * warned about otherwise (config validate checks files before they are installed).
 */
export function loadCommandConfig(values: { config?: string | undefined; set?: string[] | undefined }, io: Pick<CommandIo, 'env' | 'stderr'>, extra: Pick<LoadOptions, 'require' | 'requiredBy' | 'requireTrustedFile'> = {}): LoadedConfig {
  // An empty --config "" is passed on (and refused), never taken as "no option".
  const loaded = loadConfig({ ...(values.config !== undefined ? { path: values.config } : {}), env: io.env, sets: values.set ?? [], ...extra });
  for (const warning of loaded.warnings) report(io, PRIORITY.warning, `mesh-harness: warning: ${warning}`);
  if (loaded.untrustedFile) report(io, PRIORITY.warning, `mesh-harness: warning: ${loaded.untrustedFile} (mesh-harness run refuses such a file)`);
  return loaded;
}
