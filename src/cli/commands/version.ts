import { loadConfig } from '../../config/load.ts';
import { ConfigError } from '../../util/errors.ts';
import type { HarnessConfig } from '../../config/types.ts';
import { readInstalledProxy, summarizeInstall, type InstallSummary } from '../../proxy/install-record.ts';
import { probeBinary } from '../../supervisor/binary-probe.ts';
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
  /** The proxy only: what `mesh-harness proxy install` recorded for it (linkerd2-proxy has no --version). */
  install?: InstallSummary;
}

async function probe(configured: string, pathEnv: string | undefined): Promise<BinaryVersion> {
  const { path, version } = await probeBinary(configured, pathEnv);
  return { configured, ...(path ? { path } : {}), ...(version ? { version } : {}) };
}

function describe(name: string, binary: BinaryVersion): string {
  if (!binary.path) return `${name}: ${binary.configured} (not found)`;
  const install = binary.install;
  if (install?.state === 'recorded') {
    return `${name}: ${binary.path} ${install.version || '(version unknown)'}${install.proxyVersion ? ` (linkerd2-proxy ${install.proxyVersion})` : ''}, installed from ${install.source} ${install.manifestDigest}`;
  }
  const note = install?.state === 'changed' || install?.state === 'unreadable' ? `; install record not used: ${install.reason}` : '';
  return `${name}: ${binary.path} ${binary.version ?? '(version unknown)'}${note}`;
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
    if (proxy.path) proxy.install = summarizeInstall(await readInstalledProxy(proxy.path));
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
