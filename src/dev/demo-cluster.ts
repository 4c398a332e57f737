/**
 * The playground's "cluster" network namespace: mesh-registrar (dist/dev-cluster.js) over
 * either a real kube-apiserver with etcd, started in that namespace (when installed: see
 * chooseDemoStore), or the embedded store. It is reachable from the "vm" over a second
 * virtual cable, with a throwaway CA that signs both the registrar's serving certificate
 * and the harness's SVIDs (as SPIRE's UpstreamAuthority would in a real mesh). The
 * registrar's ExternalWorkload events arrive as JSON lines on the child's stdout; this
 * module keeps the latest copy of each workload so the demo can wait for a condition and
 * print it.
 */
import { execa, type ResultPromise } from 'execa';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CliError, EXIT } from '../cli/exit-codes.ts';
import type { ExternalGroup, ExternalWorkload } from '../registrar/store.ts';
import { minimalEnv } from '../util/netns.ts';
import { DevCa } from './ca.ts';
import { externalWorkloadCrd, KUBE_INSTALL_HINT, KubeApiServer, REGISTRAR_NAMESPACE, REGISTRAR_SERVICE_ACCOUNT, missingKubeTools } from './kube-apiserver.ts';

export const TRUST_DOMAIN = 'root.linkerd.cluster.local';
export const REGISTRAR_ID = `spiffe://${TRUST_DOMAIN}/ns/mesh-expansion/sa/mesh-registrar`;
export const CLUSTER_IP = '198.18.98.1';
export const VM_CLUSTER_SIDE_IP = '198.18.98.2';
export const REGISTRAR_PORT = 8443;
/** Short on purpose, so the demo shows a dead VM's workload go NotReady and be collected within a minute. */
export const GRACE_SECONDS = 3;
export const TTL_SECONDS = 12;
/** Inside the cluster namespace, a fresh one: the usual ports are free. */
const KUBE_PORTS = { etcd: 2379, etcdPeer: 2380, apiserver: 6443 };

/** What the registrar stores its objects in: a real kube-apiserver, or the embedded store. */
export type DemoStore = 'kube' | 'embedded';
export const DEMO_STORE_CHOICES = ['auto', 'kube', 'embedded'] as const;
export type DemoStoreChoice = (typeof DEMO_STORE_CHOICES)[number];

/** auto: a real kube-apiserver when kube-apiserver, etcd, kubectl and openssl all run here, else the embedded store. */
export function chooseDemoStore(choice: DemoStoreChoice): DemoStore {
  if (choice === 'embedded') return 'embedded';
  const missing = missingKubeTools();
  if (missing.length === 0) return 'kube';
  if (choice === 'kube') throw new CliError(`mesh-harness demo --store kube: ${missing.join(', ')} not found; ${KUBE_INSTALL_HINT}`, EXIT.UNAVAILABLE);
  return 'embedded';
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
  store: DemoStore;
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
  /** Every change of a workload's Ready condition, in order, so a brief Ready=False is not missed. */
  readonly transitions: Array<{ name: string; status: string; reason?: string; at: number }> = [];
  private readonly waiters = new Set<() => void>();
  private child: ResultPromise | undefined;
  private exited = false;
  private kube: KubeApiServer | undefined;

  constructor(private readonly options: DemoClusterOptions) {}

  /** For the demo's step line: what the registrar runs on. */
  get storeDescription(): string {
    return this.options.store === 'kube'
      ? 'on a real kube-apiserver (with etcd, in the cluster namespace)'
      : 'with an in-memory store that enforces the real CRD schemas';
  }

  /** For the demo's summary. */
  get storeSummary(): string {
    return this.options.store === 'kube' ? 'kube-apiserver (real API server, deploy/kubernetes RBAC)' : 'embedded (in memory)';
  }

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

  /**
   * Starts the registrar with the group applied; resolves once it serves. With the kube
   * store, first starts etcd and kube-apiserver in the cluster namespace, installs the CRDs
   * and deploy/kubernetes, and applies the group as cluster admin (the registrar's own
   * RBAC only reads groups). `detail` narrates the steps that take a while.
   */
  async start(anchors: string, detail: (text: string) => void): Promise<void> {
    const { root, dir, ns, group } = this.options;
    const kubeconfig = this.options.store === 'kube' ? await this.startKube(detail) : '';
    const config = join(dir, 'registrar.json');
    writeFileSync(config, JSON.stringify({
      listen: this.address,
      adminListen: '127.0.0.1:9990',
      certFile: join(dir, 'registrar.crt'),
      keyFile: join(dir, 'registrar.key'),
      caFile: anchors,
      trustDomain: TRUST_DOMAIN,
      replica: 'demo-registrar',
      namespace: REGISTRAR_NAMESPACE,
      grace: `${GRACE_SECONDS}s`,
      ttl: `${TTL_SECONDS}s`,
      heartbeatInterval: '1s',
      store: this.options.store === 'kube'
        ? { kind: 'kube', kubeconfig, crdFiles: [] }
        : { kind: 'embedded', kubeconfig: '', crdFiles: [externalWorkloadCrd(root), join(root, 'deploy', 'kubernetes', 'externalgroup.crd.yaml')] },
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
      } else {
        const name = event.object.metadata.name;
        const before = this.ready(name);
        this.workloads.set(name, event.object);
        const after = this.ready(name);
        if (after && (after.status !== before?.status || after.reason !== before?.reason)) this.transitions.push({ name, status: after.status, reason: after.reason, at: Date.now() });
      }
      for (const wake of this.waiters) wake();
    });
    void child.then(() => {
      this.exited = true;
      for (const wake of this.waiters) wake();
    });
    await this.until('the registrar to serve', () => (groupApplied ? true : undefined), 30_000);
  }

  /** etcd and kube-apiserver in the cluster namespace, set up as a cluster with Linkerd and deploy/kubernetes; returns the registrar's kubeconfig. */
  private async startKube(detail: (text: string) => void): Promise<string> {
    const { root, dir, ns, group, track } = this.options;
    const kube = new KubeApiServer({ dir: join(dir, 'kube'), root, netns: ns, ports: KUBE_PORTS, track });
    this.kube = kube;
    detail('starting etcd and kube-apiserver (a few seconds) ...');
    const started = Date.now();
    await kube.start();
    detail(`kube-apiserver ready after ${((Date.now() - started) / 1000).toFixed(1)} s on ${kube.server} (inside the cluster namespace), logs in ${kube.dir}`);
    await kube.install();
    await kube.kubectl(['create', 'namespace', group.metadata.namespace]);
    await kube.kubectl(['apply', '-f', '-'], { input: JSON.stringify(group) });
    const { namespace, name } = group.metadata;
    detail(`kubectl apply as cluster admin: Linkerd's ExternalWorkload CRD, deploy/kubernetes, namespace ${namespace}, ExternalGroup ${namespace}/${name}`);
    detail(`the registrar signs in as ServiceAccount ${REGISTRAR_NAMESPACE}/${REGISTRAR_SERVICE_ACCOUNT}, with only the RBAC of deploy/kubernetes`);
    return kube.registrarKubeconfig;
  }

  /** --keep: how to look at the cluster's objects (kube store only). */
  pokeLines(): string[] {
    if (!this.kube) return [];
    return [`ip netns exec ${this.options.ns} kubectl --kubeconfig ${this.kube.adminKubeconfig} get externalworkloads -A -o yaml`];
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

