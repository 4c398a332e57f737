/**
 * Loading the configuration: defaults < file < MESH_HARNESS_* environment < --set flags.
 *
 * The file is untrusted input. It is read only when it is a regular file of bounded size,
 * parsed into plain data (bounded depth, no prototypes, see json.ts), and its shape is
 * checked against the schema (sections are objects, keys are known) before any value is
 * used. Every value, whatever its source, then goes through its format, which validates it
 * and parses it into the typed config. Nothing is merged by a library: for each field the
 * source with the highest precedence wins, so a value can never reach a place the schema
 * does not declare.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { isIP } from 'node:net';
import { spireAgentConfigProblems } from '../identity/spire-agent.ts';
import { extraEnvProblems } from '../proxy/env.ts';
import { ConfigError, UsageError } from '../util/errors.ts';
import { untrustedConfigFileProblem, UntrustedConfigFileError } from './file-trust.ts';
import { formatFor } from './formats.ts';
import { decideHost, readHostFacts, type HostFacts } from './host.ts';
import { isJsonObject, JsonSyntaxError, parseJson, type JsonValue } from './json.ts';
import { capProblems, joinPath, problem, showValue } from './problems.ts';
import { envVarFor, nonConfigEnv, schemaFields, schemaSections, type FieldSpec } from './schema.ts';
import type { HarnessConfig, Origin } from './types.ts';

export const DEFAULT_CONFIG_PATH = '/etc/mesh-harness/config.json';

/** A configuration is kilobytes; anything larger is a mistake (or /dev/zero). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

export interface LoadOptions {
  /** Config file; null: no file at all. When not given, DEFAULT_CONFIG_PATH is used if it exists. */
  path?: string | null;
  env?: NodeJS.ProcessEnv;
  /** `path=value` overrides from the command line (--set). */
  sets?: string[];
  /** Fields that must be non-empty for the command at hand (see requiredForRun). */
  require?: readonly string[];
  /** Name of the command that needs `require`, for the error message. */
  requiredBy?: string;
  /** Overrides the default file location (tests). */
  defaultPath?: string;
  /** What the host offers (read from /proc when not given). */
  host?: HostFacts;
  /**
   * Refuse (UntrustedConfigFileError, exit 78) a file that an account other than root could
   * change (file-trust.ts): for the commands that act on it as root (run, its reloads).
   * Otherwise the problem is returned as `untrustedFile`.
   */
  requireTrustedFile?: boolean;
}

export interface LoadedConfig {
  config: HarnessConfig;
  origins: Map<string, Origin>;
  /** The file that was read, if any. */
  file?: string;
  /** Things worth saying that are not errors (unknown MESH_HARNESS_* variables). */
  warnings: string[];
  /** Why the file could be changed by an account other than root (mesh-harness run refuses it). */
  untrustedFile?: string;
}

const SECTIONS = Object.keys(schemaSections);
const FIELDS = new Map<string, FieldSpec>(schemaFields());

function sectionKeys(section: string): string[] {
  return Object.keys((schemaSections as Record<string, Record<string, FieldSpec>>)[section] ?? {});
}

function fileProblem(path: string, what: string): ConfigError {
  return new ConfigError([`config file ${showValue(path)}: ${what}`]);
}

/**
 * Reads the file only if it is a regular file of at most MAX_CONFIG_BYTES. Opening with
 * O_NONBLOCK keeps a FIFO from blocking the open; fstat on the opened descriptor then
 * decides, so a symlink to /dev/zero or a directory is refused before anything is read.
 */
function readConfigText(path: string, explicit: boolean): { text: string; untrusted: string | undefined } | undefined {
  if (path === '') throw new ConfigError(['config file "": the path is empty; pass the path of a JSON file, or leave the option out to use ' + DEFAULT_CONFIG_PATH]);
  if (path.includes('\0')) throw fileProblem(path, 'the path contains a NUL character');
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) return undefined;
    if (code === 'ENOENT') throw fileProblem(path, `does not exist; pass an existing file, or leave the option out to use ${DEFAULT_CONFIG_PATH}`);
    if (code === 'EACCES') throw fileProblem(path, 'permission denied; run as root or make it readable');
    if (code === 'ENOTDIR') throw fileProblem(path, 'a part of the path is not a directory');
    throw fileProblem(path, `cannot be opened (${code ?? 'unknown error'})`);
  }
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw fileProblem(path, 'is a directory; expected a JSON file');
    if (!stat.isFile()) throw fileProblem(path, 'is not a regular file (a FIFO, socket or device); the configuration is read only from a regular JSON file');
    if (stat.size > MAX_CONFIG_BYTES) throw fileProblem(path, `is ${stat.size} bytes; a configuration file may be at most ${MAX_CONFIG_BYTES} bytes`);
    const buffer = Buffer.alloc(Math.min(stat.size, MAX_CONFIG_BYTES) + 1);
    let length = 0;
    for (let n; length < buffer.length && (n = readSync(fd, buffer, length, buffer.length - length, null)) > 0; ) length += n;
    if (length > MAX_CONFIG_BYTES) throw fileProblem(path, `grew past ${MAX_CONFIG_BYTES} bytes while being read`);
    const text = buffer.subarray(0, length).toString('utf8');
    if (text.includes('\uFFFD')) throw fileProblem(path, 'is not valid UTF-8 text');
    // Judged on the descriptor that was read: the file cannot be swapped between check and read.
    return { text, untrusted: untrustedConfigFileProblem(path, stat) };
  } finally {
    closeSync(fd);
  }
}

function readConfigFile(path: string, explicit: boolean, requireTrusted: boolean): { value: JsonValue; untrusted: string | undefined } | undefined {
  const read = readConfigText(path, explicit);
  if (read === undefined) return undefined;
  const { text, untrusted } = read;
  if (untrusted && requireTrusted) throw new UntrustedConfigFileError(untrusted);
  if (text.trim() === '') throw fileProblem(path, 'is empty; write a JSON object such as {} (every setting has a default)');
  try {
    return { value: parseJson(text.replace(/^\uFEFF/, '')), untrusted };
  } catch (err) {
    if (err instanceof JsonSyntaxError) throw fileProblem(path, `not valid JSON: ${err.message}`);
    throw err;
  }
}

/** The file's values by field path, and every shape problem (unknown keys, wrong nesting). */
function fileValues(file: JsonValue, problems: string[]): Map<string, JsonValue> {
  const values = new Map<string, JsonValue>();
  if (!isJsonObject(file)) {
    problems.push(problem('(top level)', file, `must be a JSON object with the sections ${SECTIONS.join(', ')}`));
    return values;
  }
  for (const [section, body] of Object.entries(file)) {
    const at = joinPath('', section);
    if (!SECTIONS.includes(section)) {
      problems.push(problem(at, body, `unknown section; allowed sections: ${SECTIONS.join(', ')}`));
      continue;
    }
    if (!isJsonObject(body)) {
      problems.push(problem(at, body, `must be an object holding the ${section} settings`));
      continue;
    }
    const keys = sectionKeys(section);
    for (const [key, value] of Object.entries(body)) {
      if (keys.includes(key)) values.set(`${section}.${key}`, value);
      else problems.push(problem(joinPath(at, key), value, `unknown key; ${section} accepts: ${keys.join(', ')}`));
    }
  }
  return values;
}

/** Splits `--set section.key=value`; a malformed flag is a usage error (64), not a config one. */
export function parseSetFlag(assignment: string): { path: string; text: string } {
  const eq = assignment.indexOf('=');
  const path = eq > 0 ? assignment.slice(0, eq) : '';
  if (!/^[^.=]+\.[^=]+$/.test(path)) {
    throw new UsageError(`--set ${showValue(assignment)}: expected section.key=value, such as --set log.level=debug`);
  }
  return { path, text: assignment.slice(eq + 1) };
}

function unknownFieldProblem(path: string, value: unknown): string {
  const [section = ''] = path.split('.');
  const keys = sectionKeys(section);
  return keys.length
    ? problem(path, value, `unknown key; ${section} accepts: ${keys.join(', ')}`)
    : problem(path, value, `unknown section; allowed sections: ${SECTIONS.join(', ')}`);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

function unknownEnvWarnings(env: NodeJS.ProcessEnv, known: Set<string>): string[] {
  const warnings: string[] = [];
  for (const name of Object.keys(env)) {
    if (!name.startsWith('MESH_HARNESS_') || known.has(name) || nonConfigEnv.has(name)) continue;
    const shown = showValue(name);
    const near = name.length <= 64 ? [...known].find((k) => editDistance(k, name) <= 2) : undefined;
    warnings.push(`${shown}: unknown variable, ignored${near ? `; did you mean ${near}?` : ''}`);
    if (warnings.length >= 20) break;
  }
  return warnings;
}

const LOOPBACK = (address: string) => (isIP(address) === 4 && address.startsWith('127.')) || address === '::1';

/** Rules between fields, and per mode; each is a config error (78) like any other. */
function crossFieldProblems(config: HarnessConfig): string[] {
  const problems: string[] = [];
  const { proxy, admin, spire } = config;
  const ports: Array<[string, number]> = [
    ['proxy.inboundPort', proxy.inboundPort],
    ['proxy.outboundPort', proxy.outboundPort],
    ['proxy.adminPort', proxy.adminPort],
    ['proxy.controlPort', proxy.controlPort],
  ];
  if (LOOPBACK(admin.address)) ports.push(['admin.port', admin.port]);
  for (let i = 0; i < ports.length; i++) {
    for (let j = i + 1; j < ports.length; j++) {
      if (ports[i]![1] === ports[j]![1]) problems.push(problem(ports[j]![0], ports[j]![1], `must differ from ${ports[i]![0]}, which uses the same port`));
    }
  }
  if (!LOOPBACK(admin.address) && !admin.allowNonLoopback) {
    problems.push(problem('admin.address', admin.address, 'the admin API has no authentication, so it binds loopback only (127.0.0.1 or ::1); set admin.allowNonLoopback to true to expose it'));
  }
  // Managed mode renders the agent's configuration unless one is given: the rendering's
  // own rule decides what it needs (a join token is not among them: an agent that has
  // attested once re-attests from its data directory).
  if (spire.mode === 'managed' && !spire.agentConfig) problems.push(...spireAgentConfigProblems(spire));
  const ips = config.workload.ips;
  if (ips.filter((ip) => isIP(ip) === 4).length > 1 || ips.filter((ip) => isIP(ip) === 6).length > 1) {
    problems.push(problem('workload.ips', ips, 'may hold at most one IPv4 and one IPv6 address (an ExternalWorkload allows no more)'));
  }
  problems.push(...extraEnvProblems(config));
  return problems;
}

/**
 * Loads the configuration with precedence defaults < file < environment < --set flags,
 * validates all of it and throws a ConfigError listing every problem at once.
 */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  // Flags first: a malformed --set is a usage error whatever the file holds.
  const sets = new Map<string, string>();
  const problems: string[] = [];
  for (const assignment of options.sets ?? []) {
    const { path, text } = parseSetFlag(assignment);
    if (FIELDS.has(path)) sets.set(path, text);
    else problems.push(`--set ${unknownFieldProblem(path, text)}`);
  }

  const explicit = options.path !== undefined && options.path !== null;
  const path = explicit ? (options.path as string) : (options.defaultPath ?? DEFAULT_CONFIG_PATH);
  const read = options.path === null ? undefined : readConfigFile(path, explicit, options.requireTrustedFile ?? false);
  const file = read?.value;
  const fromFile = file === undefined ? new Map<string, JsonValue>() : fileValues(file, problems);

  const envNames = new Set<string>();
  const config: Record<string, Record<string, unknown>> = {};
  const origins = new Map<string, Origin>();
  for (const [field, spec] of FIELDS) {
    const [section, key] = field.split('.') as [string, string];
    const format = formatFor(spec.format);
    const envName = envVarFor(field);
    envNames.add(envName);
    let raw: JsonValue | undefined;
    // Where a value came from when it was not the file, shown after the field path.
    let source = '';
    let origin: Origin;
    if (sets.has(field)) {
      const text = sets.get(field)!;
      raw = format.fromText ? format.fromText(text) : text;
      source = ' (--set)';
      origin = { source: 'flag' };
    } else if (env[envName] !== undefined) {
      const text = env[envName]!;
      raw = format.fromText ? format.fromText(text) : text;
      source = ` (from ${envName})`;
      origin = { source: 'env', name: envName };
    } else if (fromFile.has(field)) {
      raw = fromFile.get(field)!;
      origin = { source: 'file', path };
    } else {
      origin = { source: 'default' };
    }
    origins.set(field, origin);
    config[section] ??= {};
    if (raw === undefined) {
      config[section]![key] = format.fromDefault ? format.fromDefault(spec.default) : defaultValue(format, spec, field);
      continue;
    }
    const parsed = format.parse(raw, field);
    if (parsed.ok) config[section]![key] = parsed.value;
    else problems.push(...parsed.problems.map((line) => line.replace(': got ', `${source}: got `)));
  }

  const typed = config as unknown as HarnessConfig;
  if (problems.length === 0) {
    const { decisions, problems: hostProblems } = decideHost(typed.iptables.ipv6, options.host ?? readHostFacts());
    typed.host = decisions;
    problems.push(...hostProblems, ...crossFieldProblems(typed));
  }

  for (const required of options.require ?? []) {
    const [section, key] = required.split('.') as [string, string];
    const value = config[section]?.[key];
    if (value === '' || value === undefined) {
      problems.push(`${required}: not set; required by ${options.requiredBy ?? 'this command'}: set it in ${file === undefined ? 'the config file' : path} or with ${envVarFor(required)}`);
    }
  }
  if (problems.length) throw new ConfigError(capProblems(problems));
  return { config: typed, origins, warnings: unknownEnvWarnings(env, envNames), ...(file !== undefined ? { file: path } : {}), ...(read?.untrusted ? { untrustedFile: read.untrusted } : {}) };
}

/** Schema defaults go through their format too, so a wrong default fails every test at once. */
function defaultValue(format: ReturnType<typeof formatFor>, spec: FieldSpec, field: string): unknown {
  const parsed = format.parse(structuredClone(spec.default) as JsonValue, field);
  if (!parsed.ok) throw new Error(`schema default of ${field} is invalid: ${parsed.problems.join('; ')}`);
  return parsed.value;
}

/** A typed value back as config data (the form a file would hold), for `config show`. */
export function showField(field: string, value: unknown): JsonValue {
  const spec = FIELDS.get(field);
  const format = spec ? formatFor(spec.format) : undefined;
  return format?.show ? format.show(value) : (value as JsonValue);
}
