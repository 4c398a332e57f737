import { loadConfig, type LoadedConfig, type LoadOptions } from '../config/load.ts';
import type { CommandIo } from './command.ts';

/** Loads the configuration named by a command's --config and --set options. */
export function loadCommandConfig(values: { config?: string | undefined; set?: string[] | undefined }, io: Pick<CommandIo, 'env'>, extra: Pick<LoadOptions, 'require' | 'requiredBy'> = {}): LoadedConfig {
  return loadConfig({ ...(values.config ? { path: values.config } : {}), env: io.env, sets: values.set ?? [], ...extra });
}
