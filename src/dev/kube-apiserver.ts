/**
 * A real, throwaway Kubernetes API server: etcd and kube-apiserver
 * (scripts/install-kube-apiserver.sh) on loopback, with a CA made by openssl in a
 * directory, optionally inside a network namespace (`ip netns exec`). install() applies
 * Linkerd's ExternalWorkload CRD (deploy/linkerd, vendored unchanged) and deploy/kubernetes
 * with `kubectl apply -k`, so every object is validated by the API server itself, and the
 * registrar's kubeconfig carries exactly the identity deploy/kubernetes binds its RBAC to.
 *
 * What `mesh-harness demo` runs its "cluster" on when installed, and what every registrar
 * test runs against (test/helpers/kube.ts). Development only: no HA, no controller-manager,
 * certificates valid for two days. The caller owns the directory and removes it; stop()
 * kills the processes, and every process is handed to `track` as it starts.
 */
import { execa, type ResultPromise } from 'execa';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { minimalEnv } from '../util/netns.ts';
import { poll } from './poll.ts';

/** Namespace and ServiceAccount deploy/kubernetes runs the registrar as. */
export const REGISTRAR_NAMESPACE = 'mesh-expansion';
export const REGISTRAR_SERVICE_ACCOUNT = 'mesh-registrar';

/** How to get what this module runs, for error messages. */
export const KUBE_INSTALL_HINT = 'run scripts/install-kube-apiserver.sh and apt-get install etcd-server';

const TOOLS: Array<[string, string[]]> = [
  ['kube-apiserver', ['--version']],
  ['etcd', ['--version']],
  ['kubectl', ['version', '--client']],
  ['openssl', ['version']],
];

/** The tools this module needs (kube-apiserver, etcd, kubectl, openssl) that do not run here. */
export function missingKubeTools(): string[] {
  return TOOLS.filter(([bin, args]) => spawnSync(bin, args, { stdio: 'ignore', env: minimalEnv() }).status !== 0).map(([bin]) => bin);
}

export interface KubeUser {
  /** The user name (client certificate CN). */
  name: string;
  /** Groups (client certificate O, one per group). */
  groups: string[];
}

export interface ClientCert {
  certPem: string;
  keyPem: string;
}

/** Linkerd's ExternalWorkload CRD, vendored unchanged in the repository (deploy/linkerd/). */
export function externalWorkloadCrd(root: string): string {
  return join(root, 'deploy', 'linkerd', 'external-workload.crd.yaml');
}

export interface KubeApiServerOptions {
  /** Holds the CA, etcd's data, the logs and the kubeconfigs; created when missing. */
  dir: string;
  /** The repository (package) root: deploy/linkerd and deploy/kubernetes. */
  root: string;
  /** Runs etcd, kube-apiserver and kubectl in this network namespace (its loopback must be up). */
  netns?: string;
  /** Ports on 127.0.0.1 (in the namespace, when given). */
  ports: { etcd: number; etcdPeer: number; apiserver: number };
  /** Gets every process as it starts, so the caller can kill it on any way out. */
  track?: (child: ResultPromise) => void;
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  const result = await execa('openssl', args, { cwd, reject: false, env: minimalEnv(), extendEnv: false });
  if (result.exitCode !== 0) throw new Error(`openssl ${args[0]} exited ${result.exitCode}: ${result.stderr}`);
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function exited(child: ResultPromise): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function kill(child: ResultPromise | undefined): Promise<void> {
  if (!child || exited(child)) return;
  child.kill('SIGKILL');
  await child;
}

/** A throwaway CA: the API server's serving certificate and the client certificates. */
class ThrowawayCa {
  private serial = 1;
  private constructor(private readonly dir: string, readonly certPem: string) {}

  static async create(dir: string): Promise<ThrowawayCa> {
    await openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=mesh-harness throwaway kube CA']);
    return new ThrowawayCa(dir, readFileSync(join(dir, 'ca.crt'), 'utf8'));
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

export class KubeApiServer {
  /** Admin (system:masters) kubeconfig path. */
  adminKubeconfig = '';
  /** Kubeconfig of the registrar's ServiceAccount identity: only deploy/kubernetes RBAC applies. */
  registrarKubeconfig = '';
  readonly dir: string;
  protected ca: ThrowawayCa | undefined;
  protected admin: ClientCert | undefined;
  private etcd: ResultPromise | undefined;
  private apiserver: ResultPromise | undefined;
  private readonly env: Record<string, string>;

  constructor(protected readonly options: KubeApiServerOptions) {
    this.dir = options.dir;
    // kubectl keeps its discovery cache under $HOME: here, not in the invoking user's home.
    this.env = { ...minimalEnv(), HOME: options.dir };
  }

  get port(): number {
    return this.options.ports.apiserver;
  }

  get etcdPort(): number {
    return this.options.ports.etcd;
  }

  get server(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** The CA that signed the serving certificate (PEM). */
  get caPem(): string {
    return this.ca!.certPem;
  }

  /** argv, run in the namespace when there is one. */
  private argv(command: string, args: string[]): [string, string[]] {
    return this.options.netns ? ['ip', ['netns', 'exec', this.options.netns, command, ...args]] : [command, args];
  }

  private startProcess(command: string, args: string[], logFile: string): ResultPromise {
    const [bin, argv] = this.argv(command, args);
    const child = execa(bin, argv, { env: this.env, extendEnv: false, reject: false, buffer: false, stdin: 'ignore', stdout: { file: logFile }, stderr: { file: logFile } });
    this.options.track?.(child);
    return child;
  }

  /** Starts etcd and kube-apiserver; resolves once the API server is ready. */
  async start(): Promise<void> {
    const { dir, ports } = this.options;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    this.ca = await ThrowawayCa.create(dir);
    const serving = await this.ca.issue('apiserver', '/CN=kube-apiserver', 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n');
    await openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'sa.key']);
    await openssl(dir, ['ec', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
    this.admin = await this.ca.issue('admin', '/O=system:masters/CN=mesh-harness-admin', 'extendedKeyUsage=clientAuth\n');
    this.adminKubeconfig = this.writeKubeconfig('admin', this.admin);
    this.registrarKubeconfig = await this.kubeconfigFor({
      name: `system:serviceaccount:${REGISTRAR_NAMESPACE}:${REGISTRAR_SERVICE_ACCOUNT}`,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${REGISTRAR_NAMESPACE}`],
    });

    const etcdLog = join(dir, 'etcd.log');
    const etcd = this.startProcess('etcd', [
      '--name', 'mh-kube',
      '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${ports.etcd}`,
      '--advertise-client-urls', `http://127.0.0.1:${ports.etcd}`,
      '--listen-peer-urls', `http://127.0.0.1:${ports.etcdPeer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${ports.etcdPeer}`,
      '--initial-cluster', `mh-kube=http://127.0.0.1:${ports.etcdPeer}`,
    ], etcdLog);
    this.etcd = etcd;
    // Probed from a process in the namespace: this one may be outside it.
    const probe = `fetch('http://127.0.0.1:${ports.etcd}/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`;
    await poll('etcd /health', async () => {
      if (exited(etcd)) throw new Error(`etcd exited ${etcd.exitCode ?? etcd.signalCode}:\n${tail(etcdLog)}`);
      const [bin, argv] = this.argv(process.execPath, ['-e', probe]);
      return (await execa(bin, argv, { env: this.env, extendEnv: false, reject: false })).exitCode === 0;
    }, 60_000, 100);
    await this.startApiserver();
  }

  private apiserverArgs(): string[] {
    const { dir, ports } = this.options;
    // The flags envtest (controller-runtime) uses: authorization by RBAC only, no
    // ServiceAccount admission (no controller-manager creates tokens).
    return [
      '--etcd-servers', `http://127.0.0.1:${ports.etcd}`,
      '--bind-address', '127.0.0.1',
      '--advertise-address', '127.0.0.1',
      '--secure-port', String(ports.apiserver),
      '--cert-dir', join(dir, 'certs'),
      '--tls-cert-file', join(dir, 'apiserver.crt'),
      '--tls-private-key-file', join(dir, 'apiserver.key'),
      '--client-ca-file', this.ca!.certFile,
      '--authorization-mode', 'RBAC',
      '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
      '--service-account-key-file', join(dir, 'sa.pub'),
      '--service-account-signing-key-file', join(dir, 'sa.key'),
      '--service-cluster-ip-range', '10.0.0.0/24',
      '--disable-admission-plugins', 'ServiceAccount',
      '--profiling=false',
    ];
  }

  private async startApiserver(): Promise<void> {
    const log = join(this.dir, 'apiserver.log');
    const child = this.startProcess('kube-apiserver', this.apiserverArgs(), log);
    this.apiserver = child;
    try {
      await poll('kube-apiserver /readyz', async () => {
        if (exited(child)) throw new Error(`kube-apiserver exited ${child.exitCode ?? child.signalCode}`);
        return (await this.kubectl(['get', '--raw=/readyz'], { reject: false })).exitCode === 0;
      }, 180_000, 250);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${tail(log, 30)}`);
    }
  }

  /**
   * Kills and restarts kube-apiserver on the same port and etcd. Its watch cache starts over
   * at etcd's current revision, so a watch resumed from an older resourceVersion gets 410.
   */
  async restartApiserver(): Promise<void> {
    await kill(this.apiserver);
    await this.startApiserver();
  }

  /** The Linkerd CRD, then deploy/kubernetes as an operator applies it; resolves once the registrar's RBAC is in effect. */
  async install(): Promise<void> {
    const { root } = this.options;
    // deploy/kubernetes binds a Role in the linkerd namespace, which Linkerd creates.
    await this.kubectl(['create', 'namespace', 'linkerd']);
    await this.kubectl(['apply', '-f', externalWorkloadCrd(root)]);
    await this.kubectl(['apply', '-k', join(root, 'deploy', 'kubernetes')]);
    await this.kubectl(['wait', '--for=condition=Established', '--timeout=120s', 'crd/externalworkloads.workload.linkerd.io', 'crd/externalgroups.meshexpansion.dev']);
    // RBAC and discovery catch up asynchronously: wait until the registrar may use both CRDs.
    await poll('registrar RBAC in effect', async () => {
      const checks = await Promise.all([
        ['list', 'externalworkloads.workload.linkerd.io', '--all-namespaces'],
        ['watch', 'externalgroups.meshexpansion.dev', '--all-namespaces'],
        ['create', 'leases.coordination.k8s.io', '-n', REGISTRAR_NAMESPACE],
      ].map((args) => this.kubectl(['auth', 'can-i', ...args], { kubeconfig: this.registrarKubeconfig, reject: false })));
      return checks.every((r) => r.stdout.trim() === 'yes');
    }, 60_000, 250);
  }

  /** Runs kubectl as admin (or with the given kubeconfig); throws with its stderr on failure. */
  async kubectl(args: string[], options: { kubeconfig?: string; input?: string; reject?: boolean } = {}): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const [bin, argv] = this.argv('kubectl', ['--kubeconfig', options.kubeconfig ?? this.adminKubeconfig, ...args]);
    // Bounded (kubectl's own request timeout is none): longer than the longest `kubectl wait` here.
    const result = await execa(bin, argv, { env: this.env, extendEnv: false, reject: false, timeout: 180_000, ...(options.input === undefined ? {} : { input: options.input }) });
    if (result.exitCode !== 0 && options.reject !== false) {
      throw new Error(`kubectl ${args.join(' ')} ${result.timedOut ? 'gave no result within 180 s' : `exited ${result.exitCode}`}: ${result.stderr}`);
    }
    return { exitCode: result.exitCode ?? 1, stdout: result.stdout, stderr: result.stderr };
  }

  /** A kubeconfig authenticating as `user` by client certificate (no RBAC of its own). */
  async kubeconfigFor(user: KubeUser, server = this.server): Promise<string> {
    const name = user.name.replace(/[^A-Za-z0-9-]/g, '-');
    const subject = `${user.groups.map((g) => `/O=${g}`).join('')}/CN=${user.name}`;
    const cert = await this.ca!.issue(name, subject, 'extendedKeyUsage=clientAuth\n');
    return this.writeKubeconfig(name, cert, server);
  }

  private writeKubeconfig(name: string, cert: ClientCert, server = this.server): string {
    const b64 = (pem: string) => Buffer.from(pem).toString('base64');
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'mesh-harness', cluster: { server, 'certificate-authority-data': b64(this.ca!.certPem) } }],
      users: [{ name, user: { 'client-certificate-data': b64(cert.certPem), 'client-key-data': b64(cert.keyPem) } }],
      contexts: [{ name, context: { cluster: 'mesh-harness', user: name } }],
      'current-context': name,
    };
    const path = join(this.dir, `${name}.${server.replace(/\W/g, '')}.kubeconfig`);
    writeFileSync(path, JSON.stringify(config, null, 2), { mode: 0o600 });
    return path;
  }

  /** Kills kube-apiserver and etcd (the directory stays: the caller removes it). */
  async stop(): Promise<void> {
    await kill(this.apiserver);
    await kill(this.etcd);
  }
}
