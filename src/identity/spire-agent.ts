/**
 * Managed mode: the harness runs spire-agent itself. The agent configuration is either the
 * operator's file (spire.agentConfig) or rendered from a handful of `spire` fields by a pure
 * function; the child is kept running by a ChildSupervisor that calls it ready once its
 * Workload API socket answers.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Registry } from 'prom-client';
import type { HarnessConfig } from '../config/types.ts';
import type { Logger } from '../log/logger.ts';
import type { ChildSpec } from '../supervisor/child.ts';
import { ChildSupervisor, type ChildSupervisorOptions } from '../supervisor/supervisor.ts';
import { findExecutable } from '../supervisor/which.ts';
import { parseWorkloadApiAddress, workloadApiServes } from './workload-api-client.ts';

export const SPIRE_AGENT_CHILD = 'spire-agent';

/** The child's whole environment: spire-agent needs nothing from the harness's. */
const CHILD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface SpireAgentPaths {
  /** The configuration file spire-agent is started with. */
  configFile: string;
}

/** What keeps `spire` from rendering an agent configuration, one line per field. */
export function spireAgentConfigProblems(spire: HarnessConfig['spire']): string[] {
  const problems: string[] = [];
  if (!spire.serverAddress) problems.push('spire.serverAddress: got ""; required when spire.mode is "managed": set the SPIRE server host name or IP (or give a complete spire.agentConfig)');
  if (!spire.trustBundleFile) {
    problems.push('spire.trustBundleFile: got ""; required when spire.mode is "managed": set it to the SPIRE server bundle (`spire-server bundle show`; with an UpstreamAuthority on the mesh trust anchor it is the trust anchors file)');
  }
  return problems;
}

function hclString(value: string): string {
  return JSON.stringify(value);
}

/**
 * spire-agent HCL from the `spire` section: join_token node attestation (the token is read
 * by the agent from spire.joinTokenFile, so it never appears in a process list), the unix
 * workload attestor (selectors such as unix:group, by name), and keys on disk so a restarted agent
 * keeps its identity without a new token. Pure; throws when a required field is empty.
 */
export function renderSpireAgentConfig(spire: HarnessConfig['spire'], socketPath: string): string {
  const problems = spireAgentConfigProblems(spire);
  if (problems.length) throw new Error(problems.join('\n'));
  const agent: Array<[string, string]> = [
    ['data_dir', hclString(spire.dataDir)],
    ['log_level', hclString(spire.logLevel.toUpperCase())],
    ['log_format', hclString('json')],
    ['server_address', hclString(spire.serverAddress)],
    ['server_port', String(spire.serverPort)],
    ['socket_path', hclString(socketPath)],
    ['trust_domain', hclString(spire.trustDomain)],
    ['trust_bundle_path', hclString(spire.trustBundleFile)],
  ];
  if (spire.joinTokenFile) agent.push(['join_token_file', hclString(spire.joinTokenFile)]);
  const width = Math.max(...agent.map(([key]) => key.length));
  return [
    '# Rendered by mesh-harness from the `spire` section of its configuration; changes here are overwritten.',
    'agent {',
    ...agent.map(([key, value]) => `  ${key.padEnd(width)} = ${value}`),
    '}',
    '',
    'plugins {',
    '  NodeAttestor "join_token" {',
    '    plugin_data {}',
    '  }',
    '',
    '  KeyManager "disk" {',
    '    plugin_data {',
    `      directory = ${hclString(spire.dataDir)}`,
    '    }',
    '  }',
    '',
    '  WorkloadAttestor "unix" {',
    '    plugin_data {}',
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * Why a join token file must not be used: it is a credential that lets anyone who reads it
 * attest a node of the mesh once. Undefined when the file is owner-only.
 */
export function joinTokenFileProblem(path: string): string | undefined {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `join token file ${path} (spire.joinTokenFile) does not exist; write the token from \`spire-server token generate\` there with mode 0600`;
    return `join token file ${path} (spire.joinTokenFile) cannot be read: ${code ?? (err as Error).message}`;
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    return `join token file ${path} (spire.joinTokenFile) is accessible by group or others (mode ${octal}); it is a node credential: chmod 600 ${path}`;
  }
  return undefined;
}

/** The spire-agent child: `spire-agent run -config <file>` with a minimal environment. */
export function spireAgentChildSpec(config: HarnessConfig, paths: SpireAgentPaths): ChildSpec {
  return {
    name: SPIRE_AGENT_CHILD,
    command: config.spire.agentBinary,
    args: ['run', '-config', paths.configFile],
    env: { PATH: CHILD_PATH },
    stopGraceMs: 10_000,
  };
}

export interface SpireAgentSupervisorOptions {
  config: HarnessConfig;
  log: Logger;
  registry: Registry;
  /** Restart and readiness tuning (tests shorten them). */
  supervisor?: Pick<ChildSupervisorOptions, 'backoff' | 'readyPollMs' | 'stableAfterMs' | 'crashLoopThreshold'>;
}

/**
 * What spire-agent needs, checked without changing anything (a reload's prepare step):
 * the binary, the join token file, the fields the rendered configuration needs. Throws an
 * Error written for the operator.
 */
export function checkSpireAgent(config: HarnessConfig): { binary: string; socketPath: string } {
  const problems: string[] = [];
  const socketPath = parseWorkloadApiAddress(config.identity.workloadApiSocket);
  const binary = findExecutable(config.spire.agentBinary);
  if (!binary) problems.push(`spire-agent binary "${config.spire.agentBinary}" not found (spire.agentBinary); install SPIRE (scripts/install-spire.sh) or set the path`);
  if (config.spire.joinTokenFile) {
    const problem = joinTokenFileProblem(config.spire.joinTokenFile);
    if (problem) problems.push(problem);
  }
  if (!config.spire.agentConfig) problems.push(...spireAgentConfigProblems(config.spire));
  if (problems.length) throw new Error(problems.join('\n'));
  return { binary: binary!, socketPath };
}

/**
 * Gets everything spire-agent needs on disk and returns its spec: checks the join token
 * file, resolves the binary, creates the data and socket directories, and writes the
 * rendered configuration (unless the operator gave one). Throws an Error written for the
 * operator when something is wrong; run again on reload.
 */
export function prepareSpireAgent(config: HarnessConfig): ChildSpec {
  const { binary, socketPath } = checkSpireAgent(config);

  mkdirSync(config.spire.dataDir, { recursive: true, mode: 0o700 });
  // The proxy user must reach the socket, so its directory is world-searchable.
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
  let configFile = config.spire.agentConfig;
  if (!configFile) {
    configFile = join(config.spire.dataDir, 'agent.conf');
    writeFileSync(configFile, renderSpireAgentConfig(config.spire, socketPath), { mode: 0o600 });
  }
  return { ...spireAgentChildSpec(config, { configFile }), command: binary };
}

/**
 * The managed spire-agent as a harness component: a ChildSupervisor that restarts the
 * agent whenever it exits and reports it ready while its Workload API socket answers.
 * Apply a reloaded configuration with `supervisor.restart(prepareSpireAgent(newConfig))`.
 */
export function spireAgentSupervisor(options: SpireAgentSupervisorOptions): ChildSupervisor {
  const spec = prepareSpireAgent(options.config);
  const socketPath = parseWorkloadApiAddress(options.config.identity.workloadApiSocket);
  return new ChildSupervisor({
    spec,
    log: options.log,
    registry: options.registry,
    isReady: () => workloadApiServes(socketPath),
    readyPollMs: 1000,
    ...options.supervisor,
  });
}
