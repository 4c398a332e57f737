/**
 * A real Kubernetes API server for tests: etcd and kube-apiserver (scripts/install-kube-apiserver.sh)
 * on loopback ephemeral ports, with a throwaway CA made by openssl. The real Linkerd
 * ExternalWorkload CRD (shared/specs) and everything in deploy/kubernetes are applied with
 * `kubectl apply -k`, so every object a test writes is validated by the API server itself and
 * the registrar's kubeconfig carries exactly the identity deploy/kubernetes binds its RBAC to.
 *
 * One cluster per test file (startup takes seconds). Processes and the directory are removed
 * in t.teardown, and the processes on process exit as a last resort.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { REPO_ROOT, sharedSpec } from './specs.ts';
import { freePort, waitFor } from './tmp.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Namespace and ServiceAccount deploy/kubernetes runs the registrar as. */
export const REGISTRAR_NAMESPACE = 'mesh-expansion';
export const REGISTRAR_SERVICE_ACCOUNT = 'mesh-registrar';

/** Whether kube-apiserver, etcd and kubectl are on PATH. */
export function kubeAvailable(): boolean {
  return [['kube-apiserver', '--version'], ['etcd', '--version'], ['kubectl', 'version', '--client']].every(
    ([bin, ...args]) => spawnSync(bin!, args, { stdio: 'ignore' }).status === 0,
  );
}

// Under CI (CI is set) these tests never skip: a missing API server must fail the run, not hide.
export const SKIP_WITHOUT_KUBE = kubeAvailable() || process.env.CI ? false : 'kube-apiserver/etcd/kubectl not on PATH; run scripts/install-kube-apiserver.sh and apt-get install etcd-server';

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

async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  await execa('openssl', args, { cwd });
}

interface ClientCert {
  certPem: string;
  keyPem: string;
}

/** A throwaway CA: the API server's serving certificate and client certificates. */
class TestCa {
  private serial = 1;
  private constructor(private readonly dir: string, readonly certPem: string) {}

  static async create(dir: string): Promise<TestCa> {
    await openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=mesh-harness test kube CA']);
    return new TestCa(dir, readFileSync(join(dir, 'ca.crt'), 'utf8'));
  }

  get certFile(): string {
    return join(this.dir, 'ca.crt');
  }

  /** Issues a certificate; subject like /O=group/CN=user; ext is an openssl extension section body. */
  async issue(name: string, subject: string, ext: string): Promise<ClientCert & { certFile: string; keyFile: string }> {
    const keyFile = join(this.dir, `${name}.key`);
    const certFile = join(this.dir, `${name}.crt`);
    writeFileSync(join(this.dir, `${name}.ext`), ext);
    await openssl(this.dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', `${name}.csr`, '-subj', subject]);
    await openssl(this.dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', String(this.serial++), '-days', '2', '-extfile', `${name}.ext`, '-out', certFile]);
    return { certFile, keyFile, certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
  }
}

export interface KubeUser {
  /** The user name (client certificate CN). */
  name: string;
  /** Groups (client certificate O, one per group). */
  groups: string[];
}

export interface RequestTotal {
  labels: Record<string, string>;
  value: number;
}

export class KubeCluster {
  /** Admin (system:masters) kubeconfig path. */
  adminKubeconfig = '';
  /** Kubeconfig of the registrar's ServiceAccount identity: only deploy/kubernetes RBAC applies. */
  registrarKubeconfig = '';
  private apiserver: ChildProcess | undefined;
  private admin: ClientCert | undefined;

  private constructor(
    readonly dir: string,
    private readonly ca: TestCa,
    private readonly etcd: ChildProcess,
    readonly etcdPort: number,
    readonly port: number,
    private readonly apiserverArgs: string[],
  ) {}

  get server(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  static async start(t: Teardown): Promise<KubeCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'mh-kube-'));
    let cluster: KubeCluster | undefined;
    let etcd: ChildProcess | undefined;
    t.teardown(async () => {
      if (cluster) await cluster.stop();
      else if (etcd) await killProcess(etcd);
      rmSync(dir, { recursive: true, force: true });
    });

    const ca = await TestCa.create(dir);
    const serving = await ca.issue('apiserver', '/CN=kube-apiserver', 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n');
    await openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'sa.key']);
    await openssl(dir, ['ec', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);

    const [etcdPort, peerPort, port] = [await freePort(), await freePort(), await freePort()];
    const etcdLog = join(dir, 'etcd.log');
    etcd = startProcess('etcd', [
      '--name', 'mh-kube',
      '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', `mh-kube=http://127.0.0.1:${peerPort}`,
    ], etcdLog);
    await waitFor('etcd /health', async () => {
      if (etcd!.exitCode !== null) throw new Error(`etcd exited ${etcd!.exitCode}:\n${tail(etcdLog)}`);
      const response = await fetch(`http://127.0.0.1:${etcdPort}/health`);
      return response.ok ? true : undefined;
    }, 60_000, 100);

    // The flags envtest (controller-runtime) uses: authorization by RBAC only, no
    // ServiceAccount admission (no controller-manager creates tokens).
    const apiserverArgs = [
      '--etcd-servers', `http://127.0.0.1:${etcdPort}`,
      '--bind-address', '127.0.0.1',
      '--advertise-address', '127.0.0.1',
      '--secure-port', String(port),
      '--cert-dir', join(dir, 'certs'),
      '--tls-cert-file', serving.certFile,
      '--tls-private-key-file', serving.keyFile,
      '--client-ca-file', ca.certFile,
      '--authorization-mode', 'RBAC',
      '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
      '--service-account-key-file', join(dir, 'sa.pub'),
      '--service-account-signing-key-file', join(dir, 'sa.key'),
      '--service-cluster-ip-range', '10.0.0.0/24',
      '--disable-admission-plugins', 'ServiceAccount',
      '--profiling=false',
    ];
    cluster = new KubeCluster(dir, ca, etcd, etcdPort, port, apiserverArgs);
    cluster.admin = await ca.issue('admin', '/O=system:masters/CN=mesh-harness-test-admin', 'extendedKeyUsage=clientAuth\n');
    cluster.adminKubeconfig = cluster.writeKubeconfig('admin', cluster.admin);
    cluster.registrarKubeconfig = await cluster.kubeconfigFor({
      name: `system:serviceaccount:${REGISTRAR_NAMESPACE}:${REGISTRAR_SERVICE_ACCOUNT}`,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${REGISTRAR_NAMESPACE}`],
    });
    await cluster.startApiserver();
    await cluster.install();
    return cluster;
  }

  private async startApiserver(): Promise<void> {
    const log = join(this.dir, 'apiserver.log');
    const child = startProcess('kube-apiserver', this.apiserverArgs, log);
    this.apiserver = child;
    try {
      await waitFor('kube-apiserver /readyz', async () => {
        if (child.exitCode !== null) throw new Error(`kube-apiserver exited ${child.exitCode}`);
        const { status } = await this.request('GET', '/readyz');
        return status === 200 ? true : undefined;
      }, 180_000, 250);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${tail(log, 30)}`);
    }
  }

  /** The Linkerd CRD from shared/specs, then deploy/kubernetes as an operator applies it. */
  private async install(): Promise<void> {
    // deploy/kubernetes binds a Role in the linkerd namespace, which Linkerd creates.
    await this.kubectl(['create', 'namespace', 'linkerd']);
    await this.kubectl(['apply', '-f', sharedSpec('external-workload.crd.yaml')]);
    await this.kubectl(['apply', '-k', join(REPO_ROOT, 'deploy', 'kubernetes')]);
    await this.kubectl(['wait', '--for=condition=Established', '--timeout=120s', 'crd/externalworkloads.workload.linkerd.io', 'crd/externalgroups.meshexpansion.dev']);
    // RBAC and discovery catch up asynchronously: wait until the registrar may use both CRDs.
    await waitFor('registrar RBAC in effect', async () => {
      const checks = await Promise.all([
        ['list', 'externalworkloads.workload.linkerd.io', '--all-namespaces'],
        ['watch', 'externalgroups.meshexpansion.dev', '--all-namespaces'],
        ['create', 'leases.coordination.k8s.io', '-n', REGISTRAR_NAMESPACE],
      ].map((args) => execa('kubectl', ['--kubeconfig', this.registrarKubeconfig, 'auth', 'can-i', ...args], { reject: false })));
      return checks.every((r) => r.stdout.trim() === 'yes') ? true : undefined;
    }, 60_000, 250);
  }

  /** Runs kubectl as admin (or with the given kubeconfig); throws with its stderr on failure. */
  async kubectl(args: string[], options: { kubeconfig?: string; input?: string; reject?: boolean } = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const result = await execa('kubectl', ['--kubeconfig', options.kubeconfig ?? this.adminKubeconfig, ...args], { reject: false, input: options.input });
    if (result.exitCode !== 0 && options.reject !== false) {
      throw new Error(`kubectl ${args.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
    }
    return { exitCode: result.exitCode ?? 1, stdout: result.stdout, stderr: result.stderr };
  }

  /** A kubeconfig authenticating as `user` by client certificate (no RBAC of its own). */
  async kubeconfigFor(user: KubeUser, server = this.server): Promise<string> {
    const name = user.name.replace(/[^A-Za-z0-9-]/g, '-');
    const subject = `${user.groups.map((g) => `/O=${g}`).join('')}/CN=${user.name}`;
    const cert = await this.ca.issue(name, subject, 'extendedKeyUsage=clientAuth\n');
    return this.writeKubeconfig(name, cert, server);
  }

  private writeKubeconfig(name: string, cert: ClientCert, server = this.server): string {
    const b64 = (pem: string) => Buffer.from(pem).toString('base64');
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster: { server, 'certificate-authority-data': b64(this.ca.certPem) } }],
      users: [{ name, user: { 'client-certificate-data': b64(cert.certPem), 'client-key-data': b64(cert.keyPem) } }],
      contexts: [{ name, context: { cluster: 'test', user: name } }],
      'current-context': name,
    };
    const path = join(this.dir, `${name}.${server.replace(/\W/g, '')}.kubeconfig`);
    writeFileSync(path, JSON.stringify(config, null, 2), { mode: 0o600 });
    return path;
  }

  /** One admin request to the API server; the body parsed when it is JSON. */
  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown; text: string }> {
    const admin = this.admin!;
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: this.port, method, path, ca: this.ca.certPem, cert: admin.certPem, key: admin.keyPem, headers: body === undefined ? {} : { 'content-type': 'application/json' }, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON (/readyz, /metrics)
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /** The API server's own apiserver_request_total series (what the zero-writes test counts). */
  async requestTotals(): Promise<RequestTotal[]> {
    const { status, text } = await this.request('GET', '/metrics');
    if (status !== 200) throw new Error(`GET /metrics: ${status}`);
    const out: RequestTotal[] = [];
    for (const line of text.split('\n')) {
      const match = /^apiserver_request_total\{(.*)\} (\S+)$/.exec(line);
      if (!match) continue;
      const labels: Record<string, string> = {};
      for (const [, key, value] of match[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
      out.push({ labels, value: Number(match[2]) });
    }
    return out;
  }

  /** Write requests (POST, PUT, PATCH, DELETE) the API server counted, optionally for one API group/resource. */
  async writeRequests(filter: { group?: string; resource?: string } = {}): Promise<number> {
    const writeVerbs = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'APPLY', 'CREATE', 'UPDATE', 'DELETECOLLECTION']);
    return (await this.requestTotals())
      .filter(({ labels }) => writeVerbs.has(labels.verb ?? '')
        && (filter.group === undefined || labels.group === filter.group)
        && (filter.resource === undefined || labels.resource === filter.resource))
      .reduce((sum, { value }) => sum + value, 0);
  }

  /** Compacts etcd at its current revision (every older resourceVersion becomes 410 Gone); returns it. */
  async compactEtcd(): Promise<number> {
    const etcd = `http://127.0.0.1:${this.etcdPort}/v3/kv`;
    const range = await fetch(`${etcd}/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/').toString('base64'), limit: 1 }) });
    const revision = Number(((await range.json()) as { header?: { revision?: string } }).header?.revision);
    if (!Number.isFinite(revision) || revision <= 0) throw new Error('etcd did not report its revision');
    const compaction = await fetch(`${etcd}/compaction`, { method: 'POST', body: JSON.stringify({ revision: String(revision), physical: true }) });
    if (!compaction.ok) throw new Error(`etcd compaction at ${revision}: ${compaction.status} ${await compaction.text()}`);
    return revision;
  }

  /**
   * Kills and restarts kube-apiserver on the same port and etcd. Its watch cache starts over
   * at etcd's current revision, so a watch resumed from an older resourceVersion gets 410.
   */
  async restartApiserver(): Promise<void> {
    if (this.apiserver) await killProcess(this.apiserver);
    await this.startApiserver();
  }

  async stop(): Promise<void> {
    if (this.apiserver) await killProcess(this.apiserver);
    await killProcess(this.etcd);
  }
}
