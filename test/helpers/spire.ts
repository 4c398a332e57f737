/**
 * Real SPIRE for tests: a spire-server (sqlite in a temp dir, in-memory keys, join_token
 * node attestation, UpstreamAuthority "disk" signing with a DevCa root so every SVID
 * chains to a trust anchor the test controls, as SPIRE chains to the Linkerd trust anchor
 * in production) and as many spire-agents as a test needs (unix workload attestor, one
 * join token each, so entries parented to one agent never reach another).
 *
 * One server per test file; agents are cheap (well under a second to attest). Everything
 * is killed and removed in t.teardown, and on process exit as a last resort.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { DevCa } from '../../src/dev/ca.ts';
import { agentIdFor, renderSpireServerConfig, spireAvailable, spireCreateEntry, spireDeleteEntry, spireHealthy, spireJoinToken, spireServerSocket, type EntryOptions } from '../../src/dev/spire-server.ts';

export { spireAvailable };
import { FULL_SETUP, skipUnless } from './host.ts';
import { freePort, waitFor } from './tmp.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}


export const SKIP_WITHOUT_SPIRE = skipUnless(spireAvailable() ? [] : ['spire-server, spire-agent'], FULL_SETUP);

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

function startProcess(command: string, args: string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(command, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

async function killProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

export interface SpireServerOptions {
  trustDomain?: string;
  /** default_x509_svid_ttl; entries may set their own. */
  defaultSvidTtl?: string;
}


export class SpireServer {
  readonly socketPath: string;
  readonly anchorsFile: string;
  private readonly agents: SpireAgent[] = [];

  private constructor(
    readonly dir: string,
    readonly trustDomain: string,
    readonly port: number,
    /** The upstream root: the trust anchor every SVID of this server chains to. */
    readonly ca: DevCa,
    private readonly process: ChildProcess,
  ) {
    this.socketPath = spireServerSocket(dir);
    this.anchorsFile = join(dir, 'anchors.pem');
  }

  static async start(t: Teardown, options: SpireServerOptions = {}): Promise<SpireServer> {
    const trustDomain = options.trustDomain ?? 'root.linkerd.cluster.local';
    // Short: agent sockets live below it and Unix socket paths are limited to 107 bytes.
    const dir = mkdtempSync(join(tmpdir(), 'mh-spire-'));
    const ca = await DevCa.create({ trustDomain, commonName: 'test Linkerd trust anchor' });
    writeFileSync(join(dir, 'anchors.pem'), ca.bundlePem);
    writeFileSync(join(dir, 'upstream.key'), ca.keyPem, { mode: 0o600 });
    const port = await freePort();
    const config = renderSpireServerConfig({ bindAddress: '127.0.0.1', port, dir, trustDomain, upstreamCert: join(dir, 'anchors.pem'), upstreamKey: join(dir, 'upstream.key'), svidTtl: options.defaultSvidTtl ?? '1m' });
    writeFileSync(join(dir, 'server.conf'), config);
    const logFile = join(dir, 'server.log');
    const child = startProcess('spire-server', ['run', '-config', join(dir, 'server.conf')], logFile);
    const server = new SpireServer(dir, trustDomain, port, ca, child);
    t.teardown(() => server.stop());
    try {
      await waitFor('spire-server healthcheck', async () => {
        if (child.exitCode !== null) throw new Error(`spire-server exited ${child.exitCode}:\n${tail(logFile)}`);
        return (await spireHealthy(server.socketPath)) ? true : undefined;
      }, 30_000, 100);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${tail(logFile)}`);
    }
    return server;
  }

  /** Kills every agent and the server, and removes the directory. */
  async stop(): Promise<void> {
    for (const agent of this.agents) await agent.stop();
    await killProcess(this.process);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A one-time join token; the agent that uses it gets SPIFFE ID agentIdFor(token). */
  joinToken(): Promise<string> {
    return spireJoinToken(this.socketPath);
  }

  agentIdFor(token: string): string {
    return agentIdFor(this.trustDomain, token);
  }

  /** Creates a registration entry; returns its ID. */
  createEntry(entry: EntryOptions): Promise<string> {
    return spireCreateEntry(this.socketPath, entry);
  }

  deleteEntry(id: string): Promise<void> {
    return spireDeleteEntry(this.socketPath, id);
  }

  /**
   * The HCL of an agent attesting to this server with a join token file. Tests of the
   * harness's managed mode render their own with renderSpireAgentConfig instead.
   */
  agentConfig(paths: { dataDir: string; socketPath: string; joinTokenFile: string }): string {
    return `agent {
  data_dir = "${paths.dataDir}"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "${this.port}"
  socket_path = "${paths.socketPath}"
  trust_domain = "${this.trustDomain}"
  trust_bundle_path = "${this.anchorsFile}"
  join_token_file = "${paths.joinTokenFile}"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = "${paths.dataDir}"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`;
  }

  /**
   * A new agent with a fresh join token, not started yet: entries parented to its
   * `spiffeId` created before `restart()` are served from its first sync. Its key and SVID
   * are kept on disk, so a killed agent restarts without a new token, like a production
   * agent after a crash.
   */
  async newAgent(name: string): Promise<SpireAgent> {
    const dir = join(this.dir, name);
    mkdirSync(dir, { recursive: true });
    const token = await this.joinToken();
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, token, { mode: 0o600 });
    const paths = { dataDir: join(dir, 'data'), socketPath: join(dir, 'api.sock'), joinTokenFile: tokenFile };
    writeFileSync(join(dir, 'agent.conf'), this.agentConfig(paths));
    const agent = new SpireAgent(dir, paths.socketPath, this.agentIdFor(token));
    this.agents.push(agent);
    return agent;
  }

  /** newAgent, started. */
  async startAgent(name: string): Promise<SpireAgent> {
    const agent = await this.newAgent(name);
    await agent.restart();
    return agent;
  }
}

export class SpireAgent {
  private child: ChildProcess | undefined;

  constructor(
    readonly dir: string,
    readonly socketPath: string,
    /** Parent ID for registration entries served by this agent. */
    readonly spiffeId: string,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the agent (again) and waits until its Workload API answers. */
  async restart(): Promise<void> {
    await this.stop();
    const logFile = join(this.dir, 'agent.log');
    const child = startProcess('spire-agent', ['run', '-config', join(this.dir, 'agent.conf')], logFile);
    this.child = child;
    try {
      await waitFor('spire-agent healthcheck', async () => {
        if (child.exitCode !== null) throw new Error(`spire-agent exited ${child.exitCode}`);
        if (!existsSync(this.socketPath)) return undefined;
        const result = await execa('spire-agent', ['healthcheck', '-socketPath', this.socketPath], { reject: false });
        return result.exitCode === 0 ? true : undefined;
      }, 30_000, 100);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${tail(logFile)}`);
    }
  }

  /** SIGKILL, like a crash: the socket file stays behind. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child) await killProcess(child, 'SIGKILL');
  }

  async stop(): Promise<void> {
    await this.kill();
  }
}
