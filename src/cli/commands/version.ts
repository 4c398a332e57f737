import { execa } from 'execa';
import { loadConfig } from '../../config/load.ts';
import { ConfigError } from '../../util/errors.ts';
import type { HarnessConfig } from '../../config/types.ts';
import { findExecutable } from '../../supervisor/which.ts';
import { harnessVersion } from '../../util/version.ts';
import { configOptions, parseCommandArgs, write, type Command } from '../command.ts';
import { loadCommandConfig } from '../command-config.ts';

export interface BinaryVersion {
  /** As configured. */
  configured: string;
  /** The executable found for it, if any. */
  path?: string;
  /** First line of `<binary> --version`, when it answered with exit 0. */
  version?: string;
}

/** A slow or hanging binary must not make `version` slow. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * Asks a binary for its version. linkerd2-proxy has no --version (it reads only its
 * environment and exits 64 on this empty one), so a failure is "unknown", not an error.
 * The probe gets no environment beyond PATH, so it can never start a real proxy.
 */
async function probe(configured: string, pathEnv: string | undefined): Promise<BinaryVersion> {
  const path = findExecutable(configured, pathEnv);
  if (!path) return { configured };
  const result = await execa(path, ['--version'], { env: { PATH: pathEnv ?? '/usr/sbin:/usr/bin:/sbin:/bin' }, extendEnv: false, reject: false, all: true, stdin: 'ignore', timeout: PROBE_TIMEOUT_MS });
  const line = String(result.all ?? '')
    .split('\n')
    .map((l) => l.trim())
    .find(Boolean);
  return result.exitCode === 0 && line ? { configured, path, version: line.slice(0, 120) } : { configured, path };
}

function describe(name: string, binary: BinaryVersion): string {
  if (!binary.path) return `${name}: ${binary.configured} (not found)`;
  return `${name}: ${binary.path} ${binary.version ?? '(version unknown)'}`;
}

export const versionCommand: Command = {
  name: 'version',
  usage: 'mesh-harness version [--json] [--config PATH]',
  async run(args, io) {
    const { values } = parseCommandArgs(versionCommand, args, { ...configOptions, json: { type: 'boolean' } });
    // Only the binary paths are needed: no required fields, and a broken config file falls
    // back to the defaults instead of hiding the version.
    let config: HarnessConfig;
    let configProblem: string | undefined;
    try {
      config = loadCommandConfig(values, io).config;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      configProblem = `configuration not usable (${err.problems[0]}${err.problems.length > 1 ? ', ...' : ''}); showing default binary paths`;
      config = loadConfig({ env: {}, path: null }).config;
    }
    const [proxy, spireAgent] = await Promise.all([probe(config.proxy.binary, io.env.PATH), probe(config.spire.agentBinary, io.env.PATH)]);
    const info = { 'mesh-harness': harnessVersion(), node: process.versions.node, proxy, spireAgent, ...(configProblem ? { note: configProblem } : {}) };
    if (values.json) {
      write(io.stdout, JSON.stringify(info));
      return 0;
    }
    const lines = [`mesh-harness ${info['mesh-harness']} (node ${info.node})`, describe('linkerd2-proxy', proxy), describe('spire-agent', spireAgent)];
    if (configProblem) lines.push(`note: ${configProblem}`);
    write(io.stdout, lines.join('\n'));
    return 0;
  },
};
