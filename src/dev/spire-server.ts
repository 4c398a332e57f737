/**
 * A throwaway spire-server for the playground and the tests: sqlite in a directory,
 * in-memory keys, join_token node attestation, and UpstreamAuthority "disk" with a CA the
 * caller made, so every SVID chains to a trust anchor the caller controls (in a real mesh
 * SPIRE chains to the Linkerd trust anchor the same way). Never a production setup.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { execa } from 'execa';
import { minimalEnv } from '../util/netns.ts';

/** Whether spire-server and spire-agent run (scripts/install-spire.sh installs them). */
export function spireAvailable(): boolean {
  return ['spire-server', 'spire-agent'].every((bin) => spawnSync(bin, ['--version'], { stdio: 'ignore', env: minimalEnv() }).status === 0);
}

/** The version spire-server reports (it prints it on stderr), or "unknown". */
export function spireVersion(): string {
  const run = spawnSync('spire-server', ['--version'], { encoding: 'utf8', env: minimalEnv() });
  return `${run.stdout ?? ''}${run.stderr ?? ''}`.trim().split('\n')[0] || 'unknown';
}

export interface SpireServerFiles {
  bindAddress: string;
  port: number;
  /** The directory for the socket, data and datastore. */
  dir: string;
  trustDomain: string;
  /** The upstream CA: its certificate (the trust anchor) and key. */
  upstreamCert: string;
  upstreamKey: string;
  /** default_x509_svid_ttl, for example "1m". */
  svidTtl: string;
}

export function spireServerSocket(dir: string): string {
  return join(dir, 'server.sock');
}

/** The server's HCL. */
export function renderSpireServerConfig(files: SpireServerFiles): string {
  const q = (value: string) => JSON.stringify(value);
  return `server {
  bind_address = ${q(files.bindAddress)}
  bind_port = "${files.port}"
  socket_path = ${q(spireServerSocket(files.dir))}
  trust_domain = ${q(files.trustDomain)}
  data_dir = ${q(join(files.dir, 'server-data'))}
  log_level = "INFO"
  default_x509_svid_ttl = ${q(files.svidTtl)}
  ca_ttl = "24h"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = ${q(join(files.dir, 'datastore.sqlite3'))}
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  UpstreamAuthority "disk" {
    plugin_data {
      cert_file_path = ${q(files.upstreamCert)}
      key_file_path = ${q(files.upstreamKey)}
    }
  }
}
`;
}

/** The spire-server CLI against a server's socket, with the error it printed when it fails. */
async function spireCli(socket: string, args: string[]): Promise<string> {
  const [command, ...rest] = args;
  // Bounded: a server that accepts on its socket and never answers must not hold up the caller.
  const result = await execa('spire-server', [command!, ...rest, '-socketPath', socket], { env: minimalEnv(), extendEnv: false, reject: false, timeout: 30_000 });
  if (result.timedOut) throw new Error(`spire-server ${args.slice(0, 2).join(' ')}: no answer from ${socket} within 30 s`);
  if (result.exitCode !== 0) throw new Error(`spire-server ${args.slice(0, 2).join(' ')}: ${String(result.stderr || result.stdout).trim()}`);
  return String(result.stdout);
}

export async function spireHealthy(socket: string): Promise<boolean> {
  return spireCli(socket, ['healthcheck']).then(() => true, () => false);
}

/** A one-time join token (10 minutes). */
export async function spireJoinToken(socket: string): Promise<string> {
  const stdout = await spireCli(socket, ['token', 'generate', '-ttl', '600', '-output', 'json']);
  const value = (JSON.parse(stdout) as { value?: unknown }).value;
  if (typeof value !== 'string' || !value) throw new Error(`spire-server token generate: unexpected output ${stdout}`);
  return value;
}

export function agentIdFor(trustDomain: string, token: string): string {
  return `spiffe://${trustDomain}/spire/agent/join_token/${token}`;
}

export interface EntryOptions {
  parentId: string;
  spiffeId: string;
  selector: string;
  /** Seconds. */
  x509SvidTtl?: number;
}

/** Creates a registration entry; returns its ID. */
export async function spireCreateEntry(socket: string, entry: EntryOptions): Promise<string> {
  const args = ['entry', 'create', '-parentID', entry.parentId, '-spiffeID', entry.spiffeId, '-selector', entry.selector, '-output', 'json'];
  if (entry.x509SvidTtl !== undefined) args.push('-x509SVIDTTL', String(entry.x509SvidTtl));
  const stdout = await spireCli(socket, args);
  const result = (JSON.parse(stdout) as { results?: Array<{ entry?: { id?: string }; status?: { code?: number; message?: string } }> }).results?.[0];
  if (!result?.entry?.id || result.status?.code !== 0) throw new Error(`spire-server entry create failed: ${stdout}`);
  return result.entry.id;
}

export async function spireDeleteEntry(socket: string, id: string): Promise<void> {
  await spireCli(socket, ['entry', 'delete', '-entryID', id]);
}
