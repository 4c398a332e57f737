/**
 * Registrar test pieces: a PKI from the dev CA (the registrar's serving certificate with
 * its SPIFFE ID, harness SVIDs), mesh-registrar replicas as real processes (dist/, so a
 * replica can be SIGKILLed like a pod), harnesses as real RegistrationComponents over
 * real mutual TLS, and ExternalGroups applied to the real API server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { chmodSync, closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { HarnessConfig } from '../../src/config/types.ts';
import { DevCa, type IssuedSvid } from '../../src/dev/ca.ts';
import { createLogger } from '../../src/log/logger.ts';
import * as grpc from '@grpc/grpc-js';
import { PROTOCOL_VERSION, proxyOnlyState, registrationService, type ConnectStream, type HarnessMessage, type Hello, type RegistrarMessage, type WorkloadState } from '../../src/protocol/registration.ts';
import { RegistrationComponent } from '../../src/registration/component.ts';
import type { ReadinessSource } from '../../src/registration/readiness.ts';
import type { ExternalWorkload } from '../../src/registrar/store.ts';
import type { KubeCluster } from './kube.ts';
import { REPO_ROOT } from './specs.ts';
import { freePort, tempDir, waitFor } from './tmp.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export const TRUST_DOMAIN = 'root.linkerd.cluster.local';
export const REGISTRAR_ID = `spiffe://${TRUST_DOMAIN}/ns/mesh-expansion/sa/mesh-registrar`;

/** The server name a test group sets (spec.template.serverName) and its test harnesses present: one per group, as with a service account's pods. */
export function groupServerName(group: string, namespace = 'default'): string {
  return `${group}.${namespace}.vm.example`;
}

/** What test groups admit besides each connection's own address: the ranges test harnesses announce (they connect from loopback). */
export const TEST_ALLOWED_IPS = ['192.0.2.0/24', 'fd00::/8'];

export interface Pki {
  ca: DevCa;
  dir: string;
  anchorsFile: string;
  anchorsPem: string;
  certFile: string;
  keyFile: string;
  svid(spiffeId: string): Promise<IssuedSvid>;
}

/** The registrar's PKI; with `ca`, under that CA (a SPIRE server's upstream root, so the registrar trusts SPIRE's SVIDs). */
export async function makePki(t: Teardown, trustDomain = TRUST_DOMAIN, existing?: DevCa): Promise<Pki> {
  const dir = tempDir(t, 'mh-registrar-pki-');
  const ca = existing ?? (await DevCa.create({ trustDomain }));
  const serving = await ca.issueSvid({ spiffeId: REGISTRAR_ID, ttlMs: 3_600_000 });
  const anchorsFile = join(dir, 'ca.crt');
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  writeFileSync(anchorsFile, ca.bundlePem);
  writeFileSync(certFile, serving.chain.join(''));
  writeFileSync(keyFile, serving.keyPem, { mode: 0o600 });
  return { ca, dir, anchorsFile, anchorsPem: ca.bundlePem, certFile, keyFile, svid: (spiffeId) => ca.issueSvid({ spiffeId, ttlMs: 3_600_000 }) };
}

export interface ReplicaOptions {
  replica: string;
  pki: Pki;
  kubeconfig: string;
  namespace?: string;
  grace?: string;
  ttl?: string;
  heartbeatInterval?: string;
  leaseDuration?: string;
  /** Extra config keys. */
  extra?: Record<string, unknown>;
}

/** A mesh-registrar process (dist/mesh-registrar.js; run `npm run build` first). */
export class ReplicaProcess {
  child!: ChildProcess;
  grpcAddress = '';
  adminPort = 0;
  readonly logFile: string;
  private readonly configFile: string;

  private constructor(readonly options: ReplicaOptions, dir: string) {
    this.logFile = join(dir, `${options.replica}.log`);
    this.configFile = join(dir, `${options.replica}.json`);
  }

  static async start(t: Teardown, options: ReplicaOptions): Promise<ReplicaProcess> {
    const dir = tempDir(t, `mh-registrar-${options.replica}-`);
    const replica = new ReplicaProcess(options, dir);
    t.teardown(() => replica.kill());
    await replica.launch();
    return replica;
  }

  async launch(): Promise<void> {
    const [port, adminPort] = [await freePort(), await freePort()];
    this.grpcAddress = `127.0.0.1:${port}`;
    this.adminPort = adminPort;
    writeFileSync(this.configFile, JSON.stringify({
      listen: this.grpcAddress,
      adminListen: `127.0.0.1:${adminPort}`,
      certFile: this.options.pki.certFile,
      keyFile: this.options.pki.keyFile,
      caFile: this.options.pki.anchorsFile,
      trustDomain: TRUST_DOMAIN,
      replica: this.options.replica,
      namespace: this.options.namespace ?? 'mesh-expansion',
      grace: this.options.grace ?? '10s',
      ttl: this.options.ttl ?? '5m',
      heartbeatInterval: this.options.heartbeatInterval ?? '1s',
      leaseDuration: this.options.leaseDuration ?? '15s',
      store: { kind: 'kube', kubeconfig: this.options.kubeconfig, crdFiles: [] },
      ...this.options.extra,
    }));
    const fd = openSync(this.logFile, 'a');
    this.child = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'mesh-registrar.js'), 'run', '--config', this.configFile, '--log-level', 'debug'], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const child = this.child;
    await waitFor(`registrar ${this.options.replica} /readyz`, async () => {
      if (child.exitCode !== null) throw new Error(`mesh-registrar ${this.options.replica} exited ${child.exitCode}:\n${this.log().slice(-3000)}`);
      try {
        const response = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
        return response.ok ? true : undefined;
      } catch {
        return undefined;
      }
    }, 60_000, 100);
  }

  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  async metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.adminPort}/metrics`)).text();
  }

  /** SIGKILL: the replica dies like a node going away (no drain, no more Lease renewals). */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  async terminate(): Promise<number | null> {
    return this.signal('SIGTERM');
  }

  private async signal(signal: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    return exited;
  }
}

/** Readiness the test sets by hand: the input a proxy (or probes) would give. */
export class ManualReadiness extends EventEmitter implements ReadinessSource {
  private state: WorkloadState = proxyOnlyState(true);

  current(): WorkloadState {
    return this.state;
  }

  set(state: WorkloadState): void {
    this.state = state;
    this.emit('change', state);
  }
}

export interface HarnessOptions {
  pki: Pki;
  spiffeId: string;
  registrarAddress: string;
  group: string;
  namespace?: string;
  nodeName: string;
  ips?: string[];
  machineId?: string;
  registrarIdentity?: string;
  /** identity.serverName; default groupServerName(group, namespace). */
  serverName?: string;
  /** workload.name; default empty (derived). */
  workloadName?: string;
  /** proxy.inboundPort; default 4143. */
  proxyInboundPort?: number;
  /** An SVID from somewhere else (another CA) instead of one from the test PKI. */
  svid?: IssuedSvid;
}

/** A harness's registration component, with a real SVID and mutual TLS, and the rest of the harness left out. */
export function registrationComponent(options: Omit<HarnessOptions, 'pki' | 'svid'> & { anchorsFile: string; anchorsPem: string; svid: { spiffeId: string; chain: string[]; keyPem: string } }): { component: RegistrationComponent; readiness: ManualReadiness; config: HarnessConfig } {
  const { svid } = options;
  const validated = {
    spiffeId: svid.spiffeId,
    svid: { spiffeId: svid.spiffeId, chain: svid.chain.map((pem) => new X509Certificate(pem)), keyPem: svid.keyPem, bundle: [], hint: '' },
  };
  const config = {
    workload: { group: options.group, namespace: options.namespace ?? 'default', nodeName: options.nodeName, name: options.workloadName ?? '', ips: options.ips ?? ['192.0.2.10'], ports: [] },
    identity: { spiffeId: options.spiffeId, serverName: options.serverName ?? groupServerName(options.group, options.namespace), trustAnchorsFile: options.anchorsFile, workloadApiSocket: '/nonexistent', expiryMargin: 60_000 },
    proxy: { inboundPort: options.proxyInboundPort ?? 4143 },
    control: { registrarAddress: options.registrarAddress, registrarIdentity: options.registrarIdentity ?? REGISTRAR_ID, heartbeatInterval: 1000 },
  } as unknown as HarnessConfig;
  const readiness = new ManualReadiness();
  const component = new RegistrationComponent({
    config,
    log: createLogger({ level: process.env.MH_TEST_LOG ? 'debug' : 'silent', format: 'json' }),
    registry: new Registry(),
    identity: { current: () => validated, waitForSvid: async () => validated },
    readiness,
    trustAnchorsPem: () => options.anchorsPem,
    machineId: options.machineId ?? `machine-${options.nodeName}`,
    backoff: { baseMs: 100, maxMs: 1000 },
  });
  return { component, readiness, config };
}

export async function startHarness(t: Teardown, options: HarnessOptions): Promise<{ component: RegistrationComponent; readiness: ManualReadiness; config: HarnessConfig }> {
  const svid = options.svid ?? (await options.pki.svid(options.spiffeId));
  const harness = registrationComponent({ ...options, anchorsFile: options.pki.anchorsFile, anchorsPem: options.pki.anchorsPem, svid });
  const { component } = harness;
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await component.stop();
  });
  await component.start();
  const stop = component.stop.bind(component);
  component.stop = async () => {
    stopped = true;
    await stop();
  };
  return harness;
}

/** A harness in a process of its own (test/fixtures/registration-harness.ts), so a test can SIGKILL it. */
export async function startHarnessProcess(t: Teardown, options: HarnessOptions): Promise<ChildProcess> {
  const svid = options.svid ?? (await options.pki.svid(options.spiffeId));
  const dir = tempDir(t, 'mh-registrar-harness-');
  const file = join(dir, 'options.json');
  const { pki, ...rest } = options;
  writeFileSync(file, JSON.stringify({ ...rest, anchorsFile: pki.anchorsFile, anchorsPem: pki.anchorsPem, svid: { spiffeId: svid.spiffeId, chain: svid.chain, keyPem: svid.keyPem } }), { mode: 0o600 });
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test', 'fixtures', 'registration-harness.ts'), file], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor('the harness process registered', () => {
    if (child.exitCode !== null) throw new Error(`harness fixture exited ${child.exitCode}: ${output}`);
    return output.includes('registered') ? true : undefined;
  }, 60_000, 100);
  return child;
}

export interface GroupSpec {
  name: string;
  namespace?: string;
  allowedIdentities: string[];
  labels?: Record<string, string>;
  /** spec.template.metadata.annotations; default { 'example.com/owner': 'tests' }. */
  annotations?: Record<string, string>;
  ports?: Array<{ port: number; name?: string }>;
  probes?: Array<Record<string, unknown>>;
  /** spec.template.serverName; default groupServerName(name, namespace), null for none. */
  serverName?: string | null;
  /** spec.allowedIPs; default TEST_ALLOWED_IPS. */
  allowedIPs?: string[];
  maxWorkloadsPerIdentity?: number;
  allowCustomNames?: boolean;
  nameTakeover?: 'AfterGrace' | 'Immediate';
}

export function groupManifest(group: GroupSpec): string {
  const namespace = group.namespace ?? 'default';
  const serverName = group.serverName === undefined ? groupServerName(group.name, namespace) : group.serverName;
  return JSON.stringify({
    apiVersion: 'meshexpansion.dev/v1alpha1',
    kind: 'ExternalGroup',
    metadata: { name: group.name, namespace },
    spec: {
      allowedIdentities: group.allowedIdentities,
      allowedIPs: group.allowedIPs ?? TEST_ALLOWED_IPS,
      ...(group.maxWorkloadsPerIdentity ? { maxWorkloadsPerIdentity: group.maxWorkloadsPerIdentity } : {}),
      ...(group.allowCustomNames !== undefined ? { allowCustomNames: group.allowCustomNames } : {}),
      ...(group.nameTakeover ? { nameTakeover: group.nameTakeover } : {}),
      template: {
        metadata: { labels: group.labels ?? { app: group.name }, annotations: group.annotations ?? { 'example.com/owner': 'tests' } },
        ports: group.ports ?? [{ port: 8080, name: 'http' }],
        ...(serverName ? { serverName } : {}),
      },
      ...(group.probes ? { probes: group.probes } : {}),
    },
  });
}

/**
 * What a Kubernetes Service gives the harness in front of several replicas: one address;
 * each new connection goes to the first backend that accepts it. A dead replica's
 * connections die with it, and reconnects land on a live one.
 */
export class FirstLiveRelay {
  private constructor(private readonly server: Server, readonly address: string, private readonly sockets: Set<Socket>) {}

  /** Drops every relayed connection at once (a partition between the fleet and the registrar). */
  cut(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  static async start(t: Teardown, backends: () => string[]): Promise<FirstLiveRelay> {
    const sockets = new Set<Socket>();
    const server = createServer((client) => {
      client.pause();
      const candidates = [...backends()];
      const attempt = () => {
        const next = candidates.shift();
        if (!next) return client.destroy();
        const [host, port] = [next.slice(0, next.lastIndexOf(':')), Number(next.slice(next.lastIndexOf(':') + 1))];
        const upstream = connect(port, host);
        // Refused before connecting: that backend is down, try the next.
        upstream.once('error', () => {
          upstream.destroy();
          attempt();
        });
        upstream.once('connect', () => {
          upstream.removeAllListeners('error');
          for (const socket of [client, upstream]) {
            sockets.add(socket);
            socket.once('close', () => sockets.delete(socket));
            socket.on('error', () => {
              client.destroy();
              upstream.destroy();
            });
          }
          upstream.once('close', () => client.destroy());
          client.once('close', () => upstream.destroy());
          client.pipe(upstream).pipe(client);
          client.resume();
        });
      };
      attempt();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const relay = new FirstLiveRelay(server, `127.0.0.1:${(server.address() as AddressInfo).port}`, sockets);
    t.teardown(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return relay;
  }
}

/**
 * The development Workload API (dist/) serving `spiffeId` from a socket in `dir`, signing
 * with the PKI's CA (as SPIRE's UpstreamAuthority would), so the registrar trusts its SVIDs.
 * The socket is opened to everyone (the proxy user fetches too). Killed in t.teardown.
 */
export async function startDevWorkloadApi(t: Teardown, dir: string, pki: Pki, spiffeId: string): Promise<string> {
  writeFileSync(join(dir, 'ca.crt'), pki.ca.certPem);
  writeFileSync(join(dir, 'ca.key'), pki.ca.keyPem, { mode: 0o600 });
  const socket = join(dir, 'api.sock');
  const log = openSync(join(dir, 'workload-api.log'), 'a');
  const child = spawn(process.execPath, [join(REPO_ROOT, 'dist', 'dev-workload-api.js'), '--socket', socket, '--spiffe-id', spiffeId, '--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key'), '--ttl', '10m', '--log-level', 'warn'], { stdio: ['ignore', log, log], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  closeSync(log);
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  });
  await waitFor('the Workload API socket', () => {
    try {
      chmodSync(socket, 0o777);
      return true;
    } catch {
      return undefined;
    }
  }, 30_000, 100);
  return socket;
}

/** How a hand-made stream ended up: the registrar's first answer, or the gRPC error that ended it first. */
export type StreamAnswer = { message: RegistrarMessage; error?: undefined } | { message?: undefined; error: grpc.ServiceError };

export interface RawStream {
  call: ConnectStream;
  /** The first thing the registrar said (accepted, refused), or the error the stream ended with. */
  answer: Promise<StreamAnswer>;
  send(message: HarnessMessage): void;
}

/**
 * The protocol spoken by hand over real mutual TLS with a real SVID: what a VM holding a
 * valid identity could send, with none of the harness's own checks. One client is one
 * connection (its own subchannel); every stream() is another HTTP/2 stream on it.
 */
export class RawClient {
  private constructor(private readonly client: grpc.Client) {}

  static async open(t: Teardown, options: { pki: Pki; spiffeId: string; address: string; svid?: IssuedSvid }): Promise<RawClient> {
    const svid = options.svid ?? (await options.pki.svid(options.spiffeId));
    const credentials = grpc.credentials.createSsl(Buffer.from(options.pki.anchorsPem), Buffer.from(svid.keyPem), Buffer.from(svid.chain.join('')), { checkServerIdentity: () => undefined });
    const Service = registrationService();
    const client = new Service(options.address, credentials, { 'grpc.ssl_target_name_override': 'mesh-registrar', 'grpc.use_local_subchannel_pool': 1 });
    t.teardown(() => client.close());
    return new RawClient(client);
  }

  /** A hello with the fields a harness sends, overridden by `fields`. */
  static hello(fields: Partial<Hello> & Pick<Hello, 'group' | 'namespace' | 'node_name'>): Hello {
    return {
      protocol_version: PROTOCOL_VERSION,
      workload_ips: ['192.0.2.10'],
      versions: { harness: 'raw', proxy: '', spire_agent: '' },
      workload_name: '',
      state: proxyOnlyState(true),
      server_name: groupServerName(fields.group, fields.namespace),
      machine_id: `machine-${fields.node_name}`,
      proxy_inbound_port: 4143,
      ...fields,
    };
  }

  stream(hello?: Hello): RawStream {
    const call = (this.client as unknown as { Connect(): ConnectStream }).Connect();
    const answer = new Promise<StreamAnswer>((resolve) => {
      call.once('data', (message: RegistrarMessage) => resolve({ message }));
      call.once('error', (error: grpc.ServiceError) => resolve({ error }));
    });
    call.on('error', () => undefined);
    if (hello) call.write({ hello });
    return { call, answer, send: (message) => call.write(message) };
  }
}

/**
 * A real kube-apiserver seen from registrar tests: a namespace per subtest (its workloads
 * deleted when the subtest ends, as no namespace controller runs), groups applied as an
 * operator would, workloads read as the API server has them, replicas under the deploy RBAC.
 */
export class RegistrarCluster {
  private namespaces = 0;

  constructor(readonly cluster: KubeCluster, readonly pki: Pki, private readonly prefix: string) {}

  async namespace(t: Teardown): Promise<string> {
    this.namespaces += 1;
    const ns = `${this.prefix}-${this.namespaces}`;
    await this.cluster.kubectl(['create', 'namespace', ns]);
    t.teardown(() => this.cluster.kubectl(['delete', 'externalworkloads', '--all', '-n', ns, '--wait=false']));
    return ns;
  }

  async applyGroup(group: GroupSpec): Promise<void> {
    await this.cluster.kubectl(['apply', '-f', '-'], { input: groupManifest(group) });
  }

  async getWorkload(ns: string, name: string): Promise<ExternalWorkload | undefined> {
    const { status, body } = await this.cluster.request('GET', `/apis/workload.linkerd.io/v1beta1/namespaces/${ns}/externalworkloads/${name}`);
    if (status === 404) return undefined;
    if (status !== 200) throw new Error(`GET externalworkload ${ns}/${name}: ${status}`);
    return body as ExternalWorkload;
  }

  async listWorkloads(ns: string): Promise<ExternalWorkload[]> {
    const { status, body } = await this.cluster.request('GET', `/apis/workload.linkerd.io/v1beta1/namespaces/${ns}/externalworkloads`);
    if (status !== 200) throw new Error(`LIST externalworkloads in ${ns}: ${status}`);
    return (body as { items: ExternalWorkload[] }).items;
  }

  async waitForReady(ns: string, name: string, status: 'True' | 'False', reason?: string, timeoutMs = 30_000): Promise<ExternalWorkload> {
    return waitFor(`${ns}/${name} Ready=${status}${reason ? ` (${reason})` : ''}`, async () => {
      const workload = await this.getWorkload(ns, name);
      const condition = readyOf(workload);
      return condition?.status === status && (!reason || condition.reason === reason) ? workload : undefined;
    }, timeoutMs, 100);
  }

  replica(t: Teardown, options: Omit<ReplicaOptions, 'pki' | 'kubeconfig'>): Promise<ReplicaProcess> {
    return ReplicaProcess.start(t, { pki: this.pki, kubeconfig: this.cluster.registrarKubeconfig, ...options });
  }
}

export function readyOf(workload: ExternalWorkload | undefined): { status?: string; reason?: string; message?: string } | undefined {
  return workload?.status?.conditions?.find((c) => c.type === 'Ready');
}
