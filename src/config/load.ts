import convict from 'convict';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { extraEnvProblems } from '../proxy/env.ts';
import { registerFormats } from './formats.ts';
import { envVarFor, schemaFields, schemaSections, type FieldSpec } from './schema.ts';
import type { HarnessConfig, Origin } from './types.ts';

export const DEFAULT_CONFIG_PATH = '/etc/mesh-harness/config.json';

/** Every problem found in a configuration, one line each, for exit code 78. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

export interface LoadOptions {
  /** Config file. When not given, DEFAULT_CONFIG_PATH is used if it exists. */
  path?: string;
  env?: NodeJS.ProcessEnv;
  /** `path=value` overrides from the command line (--set). */
  sets?: string[];
  /** Fields that must be non-empty for the command at hand (see requiredForRun). */
  require?: readonly string[];
  /** Name of the command that needs `require`, for the error message. */
  requiredBy?: string;
  /** Overrides the default file location (tests). */
  defaultPath?: string;
}

export interface LoadedConfig {
  config: HarnessConfig;
  origins: Map<string, Origin>;
  /** The file that was read, if any. */
  file?: string;
}

let formatsRegistered = false;

function convictSchema(): Record<string, Record<string, unknown>> {
  const schema: Record<string, Record<string, unknown>> = {};
  for (const [path, spec] of schemaFields()) {
    const [section, key] = path.split('.') as [string, string];
    schema[section] ??= {};
    schema[section]![key] = {
      doc: spec.doc,
      format: spec.format,
      default: spec.default,
      env: envVarFor(path),
      sensitive: spec.sensitive ?? false,
    };
  }
  return schema;
}

function show(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

function readConfigFile(path: string, explicit: boolean): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) return undefined;
    if (code === 'ENOENT') throw new ConfigError([`config file ${path}: does not exist; pass an existing file with --config, or omit it to use ${DEFAULT_CONFIG_PATH}`]);
    if (code === 'EACCES') throw new ConfigError([`config file ${path}: permission denied; run as root or make it readable`]);
    if (code === 'EISDIR') throw new ConfigError([`config file ${path}: is a directory, expected a JSON file`]);
    throw new ConfigError([`config file ${path}: cannot be read (${code ?? String(err)})`]);
  }
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([`config file ${path}: not valid JSON: ${(err as Error).message}`]);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError([`config file ${path}: must hold a JSON object with sections ${Object.keys(schemaSections).join(', ')}`]);
  }
  return parsed as Record<string, unknown>;
}

/** Problems convict cannot describe well: unknown sections, sections that are not objects. */
function shapeProblems(file: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const sections = Object.keys(schemaSections);
  for (const [key, value] of Object.entries(file)) {
    if (!sections.includes(key)) {
      problems.push(`${key}: unknown section; allowed sections: ${sections.join(', ')}`);
    } else if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push(`${key}: got ${show(value)}; must be an object holding the ${key} settings`);
      delete file[key];
    }
  }
  return problems;
}

function unknownKeyProblem(path: string): string {
  const [section] = path.split('.');
  const keys = Object.keys((schemaSections as Record<string, Record<string, FieldSpec>>)[section ?? ''] ?? {});
  return keys.length
    ? `${path}: unknown key; ${section} accepts: ${keys.join(', ')}`
    : `${path}: unknown key; allowed sections: ${Object.keys(schemaSections).join(', ')}`;
}

/** Turns convict's multi-line validation error into our one-line-per-problem form. */
function convictProblems(message: string, get: (path: string) => unknown): string[] {
  const problems: string[] = [];
  for (const line of message.split('\n')) {
    const undeclared = /^configuration param '(.+)' not declared in the schema$/.exec(line);
    if (undeclared) {
      const path = undeclared[1]!;
      // Unknown sections were already reported with a better message.
      if (path.includes('.') && path.split('.')[0]! in schemaSections) problems.push(unknownKeyProblem(path));
      continue;
    }
    const sep = line.indexOf(': ');
    if (sep < 0) {
      problems.push(line);
      continue;
    }
    const path = line.slice(0, sep);
    let reason = line.slice(sep + 2);
    const valueAt = reason.lastIndexOf(': value was ');
    if (valueAt >= 0) reason = reason.slice(0, valueAt);
    reason = reason.replace(/^must be one of the possible values: /, 'must be one of ');
    let value: unknown;
    try {
      value = get(path);
    } catch {
      value = undefined;
    }
    problems.push(`${path}: got ${show(value)}; ${reason}`);
  }
  return problems;
}

function crossFieldProblems(config: HarnessConfig): string[] {
  const problems: string[] = [];
  const { proxy, admin } = config;
  const ports: Array<[string, number]> = [
    ['proxy.inboundPort', proxy.inboundPort],
    ['proxy.outboundPort', proxy.outboundPort],
    ['proxy.adminPort', proxy.adminPort],
    ['proxy.controlPort', proxy.controlPort],
  ];
  if (admin.address === '127.0.0.1' || admin.address === '::1' || admin.address === 'localhost') ports.push(['admin.port', admin.port]);
  for (let i = 0; i < ports.length; i++) {
    for (let j = i + 1; j < ports.length; j++) {
      if (ports[i]![1] === ports[j]![1]) {
        problems.push(`${ports[j]![0]}: got ${ports[j]![1]}; must differ from ${ports[i]![0]}, which uses the same port`);
      }
    }
  }
  const loopback = admin.address === 'localhost' || (isIP(admin.address) === 4 && admin.address.startsWith('127.')) || admin.address === '::1';
  if (isIP(admin.address) === 0 && admin.address !== 'localhost') {
    problems.push(`admin.address: got ${show(admin.address)}; must be an IP address such as 127.0.0.1`);
  } else if (!loopback && !admin.allowNonLoopback) {
    problems.push(`admin.address: got ${show(admin.address)}; the admin API has no authentication, so it binds loopback only; set admin.allowNonLoopback to true to expose it`);
  }
  problems.push(...extraEnvProblems(config));
  return problems;
}

/**
 * Loads the configuration with precedence defaults < file < environment < --set flags,
 * validates all of it and throws a ConfigError listing every problem at once.
 */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  if (!formatsRegistered) {
    registerFormats();
    formatsRegistered = true;
  }
  const env = options.env ?? process.env;
  const explicit = options.path !== undefined;
  const path = options.path ?? options.defaultPath ?? DEFAULT_CONFIG_PATH;
  const file = readConfigFile(path, explicit);

  const problems: string[] = [];
  const fileValues = file ? structuredClone(file) : {};
  problems.push(...shapeProblems(fileValues));

  const config = convict(convictSchema() as never, { env, args: [] });
  config.load(fileValues);

  const flagged = new Set<string>();
  const fieldPaths = new Set(schemaFields().map(([p]) => p));
  for (const assignment of options.sets ?? []) {
    const eq = assignment.indexOf('=');
    const key = eq > 0 ? assignment.slice(0, eq) : '';
    if (!key) {
      problems.push(`--set ${assignment}: expected section.key=value, such as --set log.level=debug`);
      continue;
    }
    if (!fieldPaths.has(key)) {
      problems.push(`--set ${unknownKeyProblem(key)}`);
      continue;
    }
    config.set(key, assignment.slice(eq + 1));
    flagged.add(key);
  }

  try {
    config.validate({ allowed: 'strict' });
  } catch (err) {
    problems.push(...convictProblems((err as Error).message, (p) => config.get(p as never)));
  }

  const values = config.getProperties() as unknown as HarnessConfig;
  if (problems.length === 0) problems.push(...crossFieldProblems(values));

  for (const required of options.require ?? []) {
    const [section, key] = required.split('.') as [keyof HarnessConfig, string];
    const value = (values[section] as Record<string, unknown>)[key];
    if (value === '' || value === undefined) {
      problems.push(`${required}: not set; required by ${options.requiredBy ?? 'this command'}: set it in ${path} or with ${envVarFor(required)}`);
    }
  }
  if (problems.length) throw new ConfigError(problems);

  const origins = new Map<string, Origin>();
  for (const fieldPath of fieldPaths) {
    const [section, key] = fieldPath.split('.') as [string, string];
    const envName = envVarFor(fieldPath);
    if (flagged.has(fieldPath)) origins.set(fieldPath, { source: 'flag' });
    else if (env[envName] !== undefined) origins.set(fieldPath, { source: 'env', name: envName });
    else if (file && typeof file[section] === 'object' && file[section] !== null && key in (file[section] as object)) origins.set(fieldPath, { source: 'file', path });
    else origins.set(fieldPath, { source: 'default' });
  }
  return { config: values, origins, ...(file ? { file: path } : {}) };
}
