/**
 * The playground's identity when SPIRE is installed: a real spire-server in the "cluster"
 * namespace, signing under the demo's trust anchor, and a join token plus registration
 * entries for the VM. The harness then runs spire-agent itself (spire.mode "managed"), as
 * a production VM can. Without SPIRE the playground falls back to the development
 * Workload API server.
 */
import { execa, type ResultPromise } from 'execa';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { minimalEnv } from '../util/netns.ts';
import { poll } from './poll.ts';
import { renderSpireServerConfig, spireCreateEntry, spireHealthy, spireJoinToken, spireServerSocket, spireVersion } from './spire-server.ts';

export const SPIRE_PORT = 8081;

export interface DemoSpireOptions {
  /** The cluster namespace and the address spire-server listens on there. */
  ns: string;
  address: string;
  dir: string;
  trustDomain: string;
  caCert: string;
  caKey: string;
  /** The trust anchors file (the agent's bootstrap bundle). */
  anchors: string;
  track(child: ResultPromise): void;
}

export interface DemoSpireResult {
  version: string;
  /** The harness config's `spire` section (managed mode). */
  spire: Record<string, unknown>;
  /** The selectors the entries were created for, and the alias they hang off, for the narration. */
  selectors: string[];
  nodeAlias: string;
}

/**
 * Starts spire-server and registers spiffeId for each group that fetches it (the harness's
 * and the proxy's), by name (`unix:group:`: the same on every host, where a gid is whatever
 * groupadd picked), parented on the node alias of the VM's group (`nodeAlias`), the way a
 * fleet registers one entry per ExternalGroup instead of one per VM.
 */
export async function startDemoSpire(options: DemoSpireOptions, spiffeId: string, nodeAlias: string, groups: string[]): Promise<DemoSpireResult> {
  const dir = join(options.dir, 'spire');
  mkdirSync(dir, { mode: 0o700 });
  writeFileSync(join(dir, 'server.conf'), renderSpireServerConfig({
    bindAddress: options.address, port: SPIRE_PORT, dir, trustDomain: options.trustDomain, upstreamCert: options.caCert, upstreamKey: options.caKey, svidTtl: '10m',
  }));
  const log = join(dir, 'server.log');
  const child = execa('ip', ['netns', 'exec', options.ns, 'spire-server', 'run', '-config', join(dir, 'server.conf')], {
    env: minimalEnv(), extendEnv: false, reject: false, buffer: false, stdout: { file: log }, stderr: { file: log },
  });
  options.track(child);
  let exited = false;
  void child.then(() => (exited = true));
  const socket = spireServerSocket(dir);
  await poll(`spire-server to answer its health check (log: ${log})`, async () => {
    if (exited) throw new Error(`spire-server exited at start (log: ${log})`);
    return spireHealthy(socket);
  }, 30_000, 200);

  const token = await spireJoinToken(socket, nodeAlias);
  const tokenFile = join(options.dir, 'join-token');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const selectors = [...new Set(groups)].map((group) => `unix:group:${group}`);
  for (const selector of selectors) await spireCreateEntry(socket, { parentId: nodeAlias, spiffeId, selector, x509SvidTtl: 600 });
  return {
    version: spireVersion(),
    selectors,
    nodeAlias,
    spire: {
      mode: 'managed',
      serverAddress: options.address,
      serverPort: SPIRE_PORT,
      trustDomain: options.trustDomain,
      trustBundleFile: options.anchors,
      joinTokenFile: tokenFile,
      dataDir: join(options.dir, 'spire-agent'),
      logLevel: 'warn',
    },
  };
}
