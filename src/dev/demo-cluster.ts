/**
 * The playground's "cluster" network namespace: mesh-registrar over the embedded store
 * (dist/dev-cluster.js), reachable from the "vm" over a second virtual cable, with a
 * throwaway CA that signs both the registrar's serving certificate and the harness's
 * SVIDs (as SPIRE's UpstreamAuthority would in a real mesh). The registrar's
 * ExternalWorkload events arrive as JSON lines on the child's stdout; this module keeps
 * the latest copy of each workload so the demo can wait for a condition and print it.
 */
import { execa, type ResultPromise } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ExternalGroup, ExternalWorkload } from '../registrar/store.ts';
import { minimalEnv } from '../util/netns.ts';
import { DevCa } from './ca.ts';

export const TRUST_DOMAIN = 'root.linkerd.cluster.local';
export const REGISTRAR_ID = `spiffe://${TRUST_DOMAIN}/ns/mesh-expansion/sa/mesh-registrar`;
export const CLUSTER_IP = '198.18.98.1';
export const VM_CLUSTER_SIDE_IP = '198.18.98.2';
export const REGISTRAR_PORT = 8443;
/** Short on purpose, so the demo shows a dead VM's workload go NotReady and be collected within a minute. */
export const GRACE_SECONDS = 3;
export const TTL_SECONDS = 12;

/** Linkerd's ExternalWorkload CRD, vendored unchanged in the repository (deploy/linkerd/). */
function externalWorkloadCrd(root: string): string {
  return join(root, 'deploy', 'linkerd', 'external-workload.crd.yaml');
}

export interface DemoClusterOptions {
  root: string;
  dir: string;
  /** The cluster namespace (already created, lo up) and the vm namespace. */
  ns: string;
  vm: string;
  /** Short id for interface names. */
  id: string;
  ip(args: string[]): Promise<void>;
  /** Registers a child process with the playground, which kills it on cleanup. */
  track(child: ResultPromise): void;
  group: ExternalGroup;
}

export interface ClusterPki {
  /** CA certificate and key for the dev Workload API (--ca-cert, --ca-key). */
  caCert: string;
  caKey: string;
  anchors: string;
}

export class DemoCluster {
  readonly workloads = new Map<string, ExternalWorkload>();
  /** Names of workloads the registrar deleted. */
  readonly deleted = new Set<string>();
  private readonly waiters = new Set<() => void>();
  private child: ResultPromise | undefined;
  private exited = false;

  constructor(private readonly options: DemoClusterOptions) {}

  get address(): string {
    return `${CLUSTER_IP}:${REGISTRAR_PORT}`;
  }

  /** The second cable: vm <-> cluster. */
  async connect(): Promise<void> {
    const { ip, ns, vm, id } = this.options;
    await ip(['link', 'add', `mhd${id}w`, 'netns', vm, 'type', 'veth', 'peer', 'name', `mhd${id}k`, 'netns', ns]);
    await ip(['-n', vm, 'addr', 'add', `${VM_CLUSTER_SIDE_IP}/24`, 'dev', `mhd${id}w`]);
    await ip(['-n', ns, 'addr', 'add', `${CLUSTER_IP}/24`, 'dev', `mhd${id}k`]);
    await ip(['-n', vm, 'link', 'set', `mhd${id}w`, 'up']);
    await ip(['-n', ns, 'link', 'set', `mhd${id}k`, 'up']);
  }

  async pki(): Promise<ClusterPki> {
    const { dir } = this.options;
    const ca = await DevCa.create({ trustDomain: TRUST_DOMAIN });
    const serving = await ca.issueSvid({ spiffeId: REGISTRAR_ID, ttlMs: 3_600_000 });
    const files = { caCert: join(dir, 'ca.crt'), caKey: join(dir, 'ca.key'), anchors: join(dir, 'trust-anchors.pem') };
    writeFileSync(files.caCert, ca.certPem);
    writeFileSync(files.caKey, ca.keyPem, { mode: 0o600 });
    writeFileSync(files.anchors, ca.bundlePem);
    writeFileSync(join(dir, 'registrar.crt'), serving.chain.join(''));
    writeFileSync(join(dir, 'registrar.key'), serving.keyPem, { mode: 0o600 });
    return files;
  }

  /** Starts the registrar with the group applied; resolves once it serves. */
  async start(anchors: string): Promise<void> {
    const { root, dir, ns, group } = this.options;
    const config = join(dir, 'registrar.json');
    writeFileSync(config, JSON.stringify({
      listen: this.address,
      adminListen: '127.0.0.1:9990',
      certFile: join(dir, 'registrar.crt'),
      keyFile: join(dir, 'registrar.key'),
      caFile: anchors,
      trustDomain: TRUST_DOMAIN,
      replica: 'demo-registrar',
      namespace: 'mesh-expansion',
      grace: `${GRACE_SECONDS}s`,
      ttl: `${TTL_SECONDS}s`,
      heartbeatInterval: '1s',
      store: { kind: 'embedded', kubeconfig: '', crdFiles: [externalWorkloadCrd(root), join(root, 'deploy', 'kubernetes', 'externalgroup.crd.yaml')] },
    }, null, 2));
    writeFileSync(join(dir, 'group.json'), JSON.stringify(group));
    const child = execa('ip', ['netns', 'exec', ns, process.execPath, join(root, 'dist', 'dev-cluster.js'), '--config', config, '--group', join(dir, 'group.json')], {
      env: minimalEnv(), extendEnv: false, reject: false, buffer: false, stdout: 'pipe', stderr: { file: join(dir, 'registrar.log') },
    });
    this.child = child;
    this.options.track(child);
    let groupApplied = false;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let event: { type: string; object: ExternalWorkload };
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        return;
      }
      if (event.type === 'group') groupApplied = true;
      else if (event.type === 'deleted') {
        this.workloads.delete(event.object.metadata.name);
        this.deleted.add(event.object.metadata.name);
      } else this.workloads.set(event.object.metadata.name, event.object);
      for (const wake of this.waiters) wake();
    });
    void child.then(() => {
      this.exited = true;
      for (const wake of this.waiters) wake();
    });
    await this.until('the registrar to serve', () => (groupApplied ? true : undefined), 30_000);
  }

  /** Waits for the registrar's view to satisfy `check`; fails if the registrar dies. */
  until<T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(test);
        fn();
      };
      const test = () => {
        const value = check();
        if (value !== undefined) done(() => resolve(value));
        else if (this.exited) done(() => reject(new Error(`the registrar exited while waiting for ${what} (log: ${join(this.options.dir, 'registrar.log')})`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`))), timeoutMs);
      this.waiters.add(test);
      test();
    });
  }

  /** The Ready condition of a workload, when it exists. */
  ready(name: string): { status: string; reason?: string; message?: string } | undefined {
    return this.workloads.get(name)?.status?.conditions?.find((c) => c.type === 'Ready');
  }

  get running(): boolean {
    return Boolean(this.child) && !this.exited;
  }
}

