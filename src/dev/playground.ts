/**
 * The embedded playground behind `mesh-harness demo`: the whole node-agent flow on one
 * host, as root, with no cluster and no Docker. A "vm" network namespace runs a sample
 * HTTP workload and the harness itself (real iptables, the development proxy as its
 * child); a "client" namespace plays the rest of the network; the development Workload
 * API server issues real X.509 SVIDs from a throwaway CA. Everything is removed on exit,
 * on failure and on Ctrl-C.
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliError, EXIT } from '../cli/exit-codes.ts';
import { minimalEnv } from '../util/netns.ts';
import { packageRoot } from '../util/paths.ts';
import { asAccount } from '../util/run-as.ts';
import { resolveGroup, resolveUser } from '../util/users.ts';
import { CONNECTION_PROBE, describeConnection, parseConnectionResult, type ConnectionResult, type ConnectionTarget } from './connection-probe.ts';
import { Footprint, sweepAbandoned } from './footprint.ts';
import { DevProxyLaunchError, writeDevProxyLauncher } from './proxy/launcher.ts';
import { OUTBOUND_MARKER } from './proxy/markers.ts';
import { dump as toYaml } from 'js-yaml';
import { chooseDemoStore, CLUSTER_IP, DemoCluster, GRACE_SECONDS, REGISTRAR_ID, TRUST_DOMAIN, TTL_SECONDS, type ClusterPki, type DemoStore, type DemoStoreChoice } from './demo-cluster.ts';
import { SPIRE_PORT, startDemoSpire } from './demo-spire.ts';
import { spireAvailable } from './spire-server.ts';

const SPIFFE_ID = 'spiffe://root.linkerd.cluster.local/demo/web';
/** The group's spec.template.serverName, and so the name the VM's proxy presents (identity.serverName). */
const SERVER_NAME = 'web.demo.vm.cluster.local';
const VM_IP = '198.18.99.2';
const CLIENT_IP = '198.18.99.1';
const WORKLOAD_PORT = 8080;
const GROUP = 'web';
const NAMESPACE = 'demo';
const ADMIN_PORT = 4192;
/** Names every namespace and directory of a playground run (see footprint.ts). */
export const PLAYGROUND_PREFIX = 'mh-demo';
/** The account the development proxy runs as. */
const PROXY_USER = 'nobody';
const PROXY_GROUP = 'nogroup';
/** The account the probes run as (probes.execUser): present on every Debian and RHEL host, and not the proxy's. */
const PROBE_USER = 'daemon';

/** The file whose presence makes the sample workload's /healthz answer 503. */
const UNHEALTHY_FILE = 'workload-unhealthy';

/** The sample workload: a greeting, and a /healthz that fails while `unhealthyFile` exists. */
function workloadScript(unhealthyFile: string): string {
  return `
const { existsSync } = require('node:fs');
require('node:http').createServer((req, res) => {
  if (req.url === '/healthz') {
    res.statusCode = existsSync(${JSON.stringify(unhealthyFile)}) ? 503 : 200;
    res.end(res.statusCode === 200 ? 'ok\\n' : 'unhealthy\\n');
    return;
  }
  res.end('hello from the VM workload; your connection came from ' + req.socket.remoteAddress + '\\n');
}).listen(${WORKLOAD_PORT}, '0.0.0.0', () => console.log('ready'));
`;
}

/** How long a traffic step waits for a connection and its answer before it says what it saw and moves on. */
const NETWORK_BOUND_MS = 5_000;
/** The backstop for any command the playground runs in a namespace (a probe reports within its own bound first). */
const COMMAND_BOUND_MS = 20_000;
/** The account the outbound step connects as: not root, and not the proxy's, so its traffic is redirected. */
const OUTBOUND_ACCOUNT = { uid: 1000, gid: 1000 };
/** The client runs nothing: an outbound connection to this port that completes was redirected. */
const DISCARD_PORT = 9;

/** What a traffic step concludes from what it saw: a summary value and a sentence for the narration. */
export interface Verdict {
  summary: string;
  explanation: string;
}

/** The client's request to the workload after the rules went in, judged by the source address the workload reports. */
export function inboundVerdict(result: ConnectionResult, boundMs: number): Verdict {
  const seen = describeConnection(result, boundMs);
  if (result.outcome === 'answer') {
    const source = /your connection came from (\S+)/.exec(result.text ?? '')?.[1];
    if (source === CLIENT_IP) {
      return { summary: `NO (the workload saw the client's own address, ${CLIENT_IP})`, explanation: `the workload sees the client's own address ${CLIENT_IP}: the connection reached it directly, not through the proxy` };
    }
    if (source) {
      const via = source === '127.0.0.1' ? 'over loopback' : source === VM_IP ? "to the workload's address, from the VM's own" : `from ${source}`;
      return {
        summary: `yes, through the proxy (the workload saw ${source}, not the client's ${CLIENT_IP})`,
        explanation: `the workload sees ${source}, not the client's ${CLIENT_IP}: iptables sent the connection to the proxy, which opened its own ${via}`,
      };
    }
    const answer = `${result.status === undefined ? 'an answer' : `HTTP ${result.status}`} "${(result.text ?? '').trim().split('\n')[0]!.slice(0, 80)}"`;
    return {
      summary: `not checked: ${answer} came back, not the workload's greeting`,
      explanation: `${answer} is not the workload's greeting: something in between, most likely the proxy, answered in its place; the proxy's log (in the harness log) says why`,
    };
  }
  if (result.outcome === 'closed' || result.outcome === 'silent') {
    return { summary: `not checked: ${seen}`, explanation: `something ${seen}; the proxy's log (in the harness log) says why` };
  }
  return { summary: `NO (${seen})`, explanation: `the request did not get through: ${seen}` };
}

/** The workload's connection to a port of the client where nothing listens, judged by what came back. */
export function outboundVerdict(result: ConnectionResult, boundMs: number): Verdict {
  const target = `${CLIENT_IP}:${DISCARD_PORT}`;
  const seen = describeConnection(result, boundMs);
  switch (result.outcome) {
    case 'answer': {
      const original = new RegExp(`${OUTBOUND_MARKER} (\\S+)`).exec(result.text ?? '')?.[1];
      if (original) {
        return { summary: 'yes, through the proxy', explanation: `nothing listens on ${target}, yet the proxy answered: iptables sent the connection to it, and it read the original destination ${original}` };
      }
      return { summary: `yes, redirected (an answer for ${target}, where nothing listens)`, explanation: `nothing listens on ${target}, yet an answer came: iptables sent the connection to the proxy` };
    }
    case 'closed':
      return {
        summary: `yes, redirected (accepted although nothing listens on ${target}, then closed)`,
        explanation: `nothing listens on ${target}, yet the connection was accepted: iptables sent it to the proxy, which then closed it without an answer`,
      };
    case 'silent':
      return {
        summary: `not checked: the proxy took the connection and held it ${boundMs / 1000} s without an answer, as linkerd2-proxy does while it waits for the Linkerd destination service, which the playground does not run`,
        explanation:
          `nothing listens on ${target}, yet the connection was accepted, so iptables sent it to the proxy, which held it ${boundMs / 1000} s without a byte back. ` +
          'linkerd2-proxy does that while it waits for the Linkerd destination service (proxy.destinationAddr), which the playground does not run: where it would send the connection is not checked',
      };
    case 'refused':
      return { summary: `NO (${target} refused it: not redirected)`, explanation: `${target} itself refused the connection: it left the VM without going through the proxy` };
    default:
      return { summary: `NO (${seen})`, explanation: `the connection to ${target} did not get anywhere: ${seen}` };
  }
}

/** The ExternalGroup's probe (handed to the harness by the registrar): quick, so the demo shows a failure within seconds. */
const PROBE = { name: 'web', httpGet: { path: '/healthz', port: WORKLOAD_PORT }, periodSeconds: 1, failureThreshold: 2 };

interface Say {
  step(text: string): void;
  detail(text: string): void;
}

interface ComponentView {
  name: string;
  phase: string;
  ready: boolean;
  message: string;
  detail?: Record<string, unknown>;
}

export interface PlaygroundOptions {
  out: NodeJS.WritableStream;
  /** How long to wait for the harness to become ready. */
  readyTimeoutMs?: number;
  /** Leave everything running after the tour, until Ctrl-C, and print how to poke at it. */
  keep?: boolean;
  /** What the registrar stores objects in (default auto: a real kube-apiserver when installed). */
  store?: DemoStoreChoice;
  /** Where SVIDs come from: real SPIRE (when installed, for auto) or the development Workload API. */
  identity?: 'auto' | 'spire' | 'dev';
  /** A proxy executable to run instead of the development proxy (a real linkerd2-proxy). */
  proxyBinary?: string;
}

async function waitUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Raised by a step that runs after cleanup began (an interrupt): the run just ends. */
class Interrupted extends Error {}

export class Playground {
  private footprint: Footprint | undefined;
  private vm = '';
  private client = '';
  private readonly children: ResultPromise[] = [];
  private dir: string | undefined;
  private harness: ResultPromise | undefined;
  private cleaning: Promise<void> | undefined;
  private readonly say: Say;
  private readonly root = packageRoot();
  private store: DemoStore = 'embedded';
  /** Real SPIRE (decided in preflight from --identity and what is installed). */
  private spire = false;

  constructor(private readonly options: PlaygroundOptions) {
    this.say = {
      step: (text) => options.out.write(`\n==> ${text}\n`),
      detail: (text) => options.out.write(`    ${text}\n`),
    };
  }

  private async preflight(): Promise<void> {
    if (process.getuid?.() !== 0) throw new CliError('mesh-harness demo needs root: it creates network namespaces and iptables rules in them (sudo mesh-harness demo)', EXIT.UNAVAILABLE);
    for (const [tool, pkg] of [['ip', 'iproute2'], ['iptables-restore', 'iptables'], ['setpriv', 'util-linux']] as const) {
      const found = await execa('sh', ['-c', `command -v ${tool}`], { reject: false, env: minimalEnv(), extendEnv: false });
      if (found.exitCode !== 0) throw new CliError(`mesh-harness demo needs ${tool}: apt-get install ${pkg} (in a clone of the repository, scripts/setup.sh installs everything the demo needs)`, EXIT.UNAVAILABLE);
    }
    for (const bundle of ['mesh-harness.js', 'dev-proxy.js', 'dev-workload-api.js', 'dev-cluster.js']) {
      if (!existsSync(join(this.root, 'dist', bundle))) throw new CliError(`dist/${bundle} is missing: run npm run build first`, EXIT.UNAVAILABLE);
    }
    this.store = chooseDemoStore(this.options.store ?? 'auto');
    const identity = this.options.identity ?? 'auto';
    this.spire = identity !== 'dev' && spireAvailable();
    if (identity === 'spire' && !this.spire) {
      throw new CliError('mesh-harness demo --identity spire: spire-server and spire-agent are not on PATH; install them with scripts/install-spire.sh, or leave out --identity', EXIT.UNAVAILABLE);
    }
  }

  private inNs(ns: string, argv: string[]) {
    return execa('ip', ['netns', 'exec', ns, ...argv], { env: minimalEnv(), extendEnv: false, reject: false, timeout: COMMAND_BOUND_MS });
  }

  /** One bounded connection from inside `ns` (as `account`, else root), reported as what was seen. */
  private async connect(ns: string, target: ConnectionTarget, account?: { uid: number; gid: number }): Promise<ConnectionResult> {
    const res = await this.inNs(ns, [...(account ? asAccount(account) : []), process.execPath, '-e', CONNECTION_PROBE, JSON.stringify(target)]);
    return parseConnectionResult(String(res.stdout), res.timedOut ? `no report within ${COMMAND_BOUND_MS / 1000} s` : `the probe exited ${res.exitCode}: ${String(res.stderr).trim()}`);
  }

  private async ip(args: string[]): Promise<void> {
    if (this.cleaning) throw new Interrupted('interrupted');
    const result = await execa('ip', args, { env: minimalEnv(), extendEnv: false, reject: false });
    if (result.exitCode !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  }

  private spawn(argv: string[], logFile?: string, env: Record<string, string> = {}): ResultPromise {
    if (this.cleaning) throw new Interrupted('interrupted');
    const child = execa(argv[0]!, argv.slice(1), { env: { ...minimalEnv(), ...env }, extendEnv: false, reject: false, buffer: false, ...(logFile ? { stdout: { file: logFile }, stderr: { file: logFile } } : {}) });
    this.children.push(child);
    return child;
  }

  private async status(): Promise<{ ready: boolean; components: ComponentView[] }> {
    const res = await this.inNs(this.vm, [process.execPath, join(this.root, 'bin', 'mesh-harness.mjs'), 'status', '--json', '--config', join(this.dir!, 'config.json')]);
    if (!res.stdout) throw new Error('no status yet');
    return JSON.parse(String(res.stdout)) as { ready: boolean; components: ComponentView[] };
  }

  async run(): Promise<number> {
    await this.preflight();
    const started = Date.now();
    const summary: Array<[string, string]> = [];
    const abandoned = await sweepAbandoned(PLAYGROUND_PREFIX);
    if (abandoned.length) {
      this.say.step('Removing what an earlier demo left behind (it was killed before it could clean up)');
      for (const line of abandoned) this.say.detail(line);
    }
    try {
      this.footprint = new Footprint(PLAYGROUND_PREFIX);
      this.vm = this.footprint.namespace('vm');
      this.client = this.footprint.namespace('client');
      const clusterNs = this.footprint.namespace('cluster');
      const id = this.footprint.id;
      this.dir = this.footprint.dir;
      const dir = this.dir;

      this.say.step('Creating "cluster", "vm" and "client" network namespaces joined by virtual cables');
      for (const ns of [this.vm, this.client, clusterNs]) {
        await this.ip(['netns', 'add', ns]);
        await this.ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      }
      await this.ip(['link', 'add', `mhd${id}v`, 'netns', this.vm, 'type', 'veth', 'peer', 'name', `mhd${id}c`, 'netns', this.client]);
      await this.ip(['-n', this.vm, 'addr', 'add', `${VM_IP}/24`, 'dev', `mhd${id}v`]);
      await this.ip(['-n', this.client, 'addr', 'add', `${CLIENT_IP}/24`, 'dev', `mhd${id}c`]);
      await this.ip(['-n', this.vm, 'link', 'set', `mhd${id}v`, 'up']);
      await this.ip(['-n', this.client, 'link', 'set', `mhd${id}c`, 'up']);
      this.say.detail(`${this.vm} (${VM_IP})  <->  ${this.client} (${CLIENT_IP})`);
      const cluster = new DemoCluster({
        root: this.root, dir, ns: clusterNs, vm: this.vm, id, ip: (args) => this.ip(args), store: this.store,
        track: (child) => {
          this.children.push(child);
          if (this.cleaning) child.kill('SIGKILL');
        },
        group: {
          apiVersion: 'meshexpansion.dev/v1alpha1',
          kind: 'ExternalGroup',
          metadata: { name: GROUP, namespace: NAMESPACE },
          // The VM reaches the registrar over its own link, so its workload IP is not the address the
          // registrar sees it connect from: the group allows it explicitly.
          spec: { allowedIdentities: [SPIFFE_ID], allowedIPs: [`${VM_IP}/32`], probes: [PROBE], template: { metadata: { labels: { app: GROUP } }, ports: [{ port: WORKLOAD_PORT, name: 'http' }], serverName: SERVER_NAME } },
        },
      });
      await cluster.connect();
      this.say.detail(`${this.vm}  <->  ${clusterNs} (${CLUSTER_IP})`);

      this.say.step('Making a throwaway certificate authority (the mesh trust anchor)');
      const pki = await cluster.pki();
      this.say.detail(`it signs the registrar's certificate (${REGISTRAR_ID}) and the VM's SVIDs`);

      this.say.step(`Starting mesh-registrar in the cluster, ${cluster.storeDescription}`);
      await cluster.start(pki.anchors, (text) => this.say.detail(text));
      this.say.detail(`ExternalGroup ${NAMESPACE}/${GROUP}: admits ${SPIFFE_ID}; a dead VM turns NotReady after ${GRACE_SECONDS} s, is deleted after ${TTL_SECONDS} s (shortened for the demo)`);
      this.say.detail(`its probe for every VM of the group: GET :${WORKLOAD_PORT}${PROBE.httpGet.path} every ${PROBE.periodSeconds} s`);
      this.say.detail(`serving on ${cluster.address} (mutual TLS), log ${join(dir, 'registrar.log')}`);
      summary.push(['store', cluster.storeSummary]);

      const socket = join(dir, 'agent.sock');
      const anchors = pki.anchors;
      const spire = await this.startIdentity({ clusterNs, pki, socket, summary });

      this.say.step(`Starting the sample HTTP workload in the vm on port ${WORKLOAD_PORT}`);
      this.spawn(['ip', 'netns', 'exec', this.vm, process.execPath, '-e', workloadScript(join(dir, UNHEALTHY_FILE))], join(dir, 'workload.log'));
      const direct = await waitUntil('the workload to answer', async () => {
        const res = await this.connect(this.client, { host: VM_IP, port: WORKLOAD_PORT, path: '/', boundMs: 2_000 });
        return res.outcome === 'answer' && res.text ? res.text.trim() : undefined;
      }, 15_000);
      this.say.detail(`client -> ${VM_IP}:${WORKLOAD_PORT} before the mesh: ${direct}`);

      const proxyBinary = this.options.proxyBinary ?? (await this.devProxy(dir));
      summary.push(['proxy', this.options.proxyBinary ? `${this.options.proxyBinary} (given with --proxy-binary)` : 'the development proxy (linkerd2-proxy\'s contract: environment, /ready, identity metric)']);
      writeFileSync(join(dir, 'config.json'), JSON.stringify({
        workload: { group: GROUP, namespace: NAMESPACE, nodeName: 'vm-demo', ports: [WORKLOAD_PORT], ips: [VM_IP] },
        identity: { spiffeId: SPIFFE_ID, serverName: SERVER_NAME, workloadApiSocket: `unix://${socket}`, trustAnchorsFile: anchors },
        ...(spire ? { spire } : {}),
        proxy: { binary: proxyBinary, user: PROXY_USER, group: PROXY_GROUP, destinationAddr: '127.0.0.1:8086', shutdownGrace: '2s' },
        // The registration stream goes straight to the registrar, not through the proxy.
        iptables: { onStop: 'clean', ignoreOutboundSubnets: [`${CLUSTER_IP}/32`] },
        control: { registrarAddress: cluster.address, registrarIdentity: REGISTRAR_ID },
        probes: { execUser: PROBE_USER },
        admin: { port: ADMIN_PORT },
        log: { format: 'json' },
      }, null, 2));

      this.say.step(`Starting mesh-harness in the vm (${spire ? 'spire-agent -> ' : ''}identity -> iptables -> proxy -> registration -> probes)`);
      const harnessStart = Date.now();
      // TMPDIR: from a checkout the probe runner cannot read, the harness copies it to the
      // temp directory; in the run's directory, the copy goes with the run, even when the
      // harness is SIGKILLed below.
      this.harness = this.spawn(['ip', 'netns', 'exec', this.vm, process.execPath, join(this.root, 'bin', 'mesh-harness.mjs'), 'run', '--config', join(dir, 'config.json')], join(dir, 'harness.log'), { TMPDIR: dir });
      this.say.detail(`config ${join(dir, 'config.json')}, log ${join(dir, 'harness.log')}`);
      const seen = new Map<string, string>();
      const ready = await waitUntil('the harness to be ready', async () => {
        const s = await this.status();
        for (const c of s.components) {
          const line = `${c.phase}: ${c.message}`;
          if (seen.get(c.name) !== line) {
            seen.set(c.name, line);
            this.say.detail(`${c.name.padEnd(9)} ${line}`);
          }
        }
        return s.ready ? s : undefined;
      }, this.options.readyTimeoutMs ?? 60_000);
      const readyMs = Date.now() - harnessStart;
      summary.push(['harness ready', `${(readyMs / 1000).toFixed(1)} s after start`]);
      const identity = ready.components.find((c) => c.name === 'identity');
      summary.push(['SVID', `${SPIFFE_ID}${identity?.detail?.notAfter ? `, valid until ${String(identity.detail.notAfter)}` : ''}`]);
      this.say.detail(`SVID issued: ${SPIFFE_ID}${identity?.detail?.notAfter ? `, valid until ${String(identity.detail.notAfter)}` : ''}`);

      this.say.step('The rules the harness applied in the vm (iptables nat table)');
      const applied = String((await this.inNs(this.vm, ['iptables-save', '-t', 'nat'])).stdout).split('\n').filter((l) => l.includes('MESH_'));
      for (const line of applied) this.say.detail(line);
      summary.push(['iptables rules', `${applied.filter((l) => l.startsWith('-A')).length} in the vm's nat table`]);

      this.say.step('The registrar created an ExternalWorkload for the VM');
      const registration = ready.components.find((c) => c.name === 'registration');
      const ewName = /registered as (\S+)/.exec(registration?.message ?? '')?.[1] ?? '';
      const ewReady = await cluster.until(`ExternalWorkload ${ewName} Ready=True`, () => (cluster.ready(ewName)?.status === 'True' ? cluster.workloads.get(ewName) : undefined), 60_000);
      for (const line of toYaml(ewReady).trimEnd().split('\n')) this.say.detail(line);
      summary.push(['ExternalWorkload', `${NAMESPACE}/${ewName} Ready=True`]);

      this.say.step('The client sends the workload a request again, now that the rules are in');
      const viaMesh = await this.connect(this.client, { host: VM_IP, port: WORKLOAD_PORT, path: '/', boundMs: NETWORK_BOUND_MS });
      const inbound = inboundVerdict(viaMesh, NETWORK_BOUND_MS);
      this.say.detail(`client -> ${VM_IP}:${WORKLOAD_PORT}: ${viaMesh.outcome === 'answer' ? viaMesh.text?.trim() : describeConnection(viaMesh, NETWORK_BOUND_MS)}`);
      this.say.detail(`(${inbound.explanation})`);
      summary.push(['inbound redirect', inbound.summary]);

      this.say.step(`The workload connects out to the client, on a port where nothing listens (${CLIENT_IP}:${DISCARD_PORT})`);
      const leaving = await this.connect(this.vm, { host: CLIENT_IP, port: DISCARD_PORT, boundMs: NETWORK_BOUND_MS }, OUTBOUND_ACCOUNT);
      const outbound = outboundVerdict(leaving, NETWORK_BOUND_MS);
      this.say.detail(`workload (uid ${OUTBOUND_ACCOUNT.uid}) -> ${CLIENT_IP}:${DISCARD_PORT}: ${leaving.outcome === 'answer' ? leaving.text?.trim() : describeConnection(leaving, NETWORK_BOUND_MS)}`);
      this.say.detail(`(${outbound.explanation})`);
      summary.push(['outbound redirect', outbound.summary]);

      this.say.step('Killing the proxy (SIGKILL): the harness restarts it');
      const before = ready.components.find((c) => c.name === 'proxy')?.detail?.pid as number | undefined;
      if (before) {
        const killedAt = Date.now();
        process.kill(before, 'SIGKILL');
        const after = await waitUntil('the proxy to come back', async () => {
          const s = await this.status();
          const pid = s.components.find((c) => c.name === 'proxy')?.detail?.pid;
          return s.ready && pid !== before ? (pid as number) : undefined;
        }, 60_000);
        const back = Date.now() - killedAt;
        this.say.detail(`proxy pid ${before} killed; pid ${after} ready again after ${(back / 1000).toFixed(1)} s`);
        // Meanwhile the registrar took the VM out of load balancing and put it back.
        const seen = (status: string, since: number) => cluster.transitions.find((c) => c.name === ewName && c.status === status && c.at >= since);
        const down = await cluster.until(`ExternalWorkload ${ewName} Ready=False after the proxy died`, () => seen('False', killedAt), 30_000);
        const up = await cluster.until(`ExternalWorkload ${ewName} Ready=True again`, () => seen('True', down.at), 30_000);
        this.say.detail(`${ewName}: Ready=False (${down.reason ?? 'no reason'}) ${((down.at - killedAt) / 1000).toFixed(1)} s after the kill, Ready=True again ${((up.at - killedAt) / 1000).toFixed(1)} s after it`);
        summary.push(['proxy crash', `restarted and ready in ${(back / 1000).toFixed(1)} s; ExternalWorkload Ready=False (${down.reason ?? 'no reason'}) meanwhile, then True`]);
      }

      summary.push(['workload probe', await this.probeFlap(cluster, ewName)]);

      if (this.options.keep) {
        this.pokeLines(ewName, cluster.pokeLines());
        await new Promise(() => undefined);
      }

      this.say.step('The VM "dies" (SIGKILL to the harness: no goodbye to the registrar)');
      const diedAt = Date.now();
      this.harness.kill('SIGKILL');
      await this.harness;
      this.say.detail(`waiting for the registrar's grace period (${GRACE_SECONDS} s) ...`);
      const notReady = await cluster.until(`ExternalWorkload ${ewName} Ready=False`, () => {
        const condition = cluster.ready(ewName);
        return condition?.status === 'False' ? condition : undefined;
      }, 60_000);
      const notReadyAfter = (Date.now() - diedAt) / 1000;
      this.say.detail(`${ewName}: Ready=False (${notReady.reason ?? 'no reason'}) after ${notReadyAfter.toFixed(1)} s: the mesh stops sending it traffic`);
      summary.push(['VM death', `Ready=False (${notReady.reason ?? 'no reason'}) after ${notReadyAfter.toFixed(1)} s (grace ${GRACE_SECONDS} s)`]);
      this.say.detail(`waiting for the time to live (${TTL_SECONDS} s) ...`);
      await cluster.until(`ExternalWorkload ${ewName} to be deleted`, () => (cluster.deleted.has(ewName) ? true : undefined), 120_000);
      const goneAfter = (Date.now() - diedAt) / 1000;
      this.say.detail(`${ewName}: deleted after ${goneAfter.toFixed(1)} s`);
      summary.push(['garbage collection', `ExternalWorkload collected after ${goneAfter.toFixed(1)} s (TTL ${TTL_SECONDS} s)`]);

      this.options.out.write('\nSummary\n');
      for (const [key, value] of summary) this.options.out.write(`  ${key.padEnd(22)} ${value}\n`);
      this.options.out.write(`  ${'total time'.padEnd(22)} ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      const ok = summary.every(([, value]) => !/^NO|unexpected/.test(value));
      return ok ? EXIT.OK : EXIT.FAILURE;
    } catch (err) {
      if (err instanceof Interrupted || this.cleaning) return EXIT.FAILURE;
      throw err;
    } finally {
      await this.cleanup();
    }
  }

  /**
   * SVIDs for the vm: real SPIRE when it is installed (spire-server in the cluster, the
   * harness running spire-agent), else the development Workload API server. Returns the
   * harness's `spire` section for SPIRE, undefined for the development server.
   */
  private async startIdentity(at: { clusterNs: string; pki: ClusterPki; socket: string; summary: Array<[string, string]> }): Promise<Record<string, unknown> | undefined> {
    const { clusterNs, pki, socket, summary } = at;
    const dir = this.dir!;
    const wanted = this.options.identity ?? 'auto';
    if (this.spire) {
      this.say.step('Starting a real spire-server in the cluster, signing under the trust anchor');
      const proxyGid = (await resolveGroup(PROXY_GROUP)).gid;
      const started = await startDemoSpire({
        ns: clusterNs, address: CLUSTER_IP, dir, trustDomain: TRUST_DOMAIN, caCert: pki.caCert, caKey: pki.caKey, anchors: pki.anchors, track: (child) => this.children.push(child),
      }, SPIFFE_ID, [process.getgid?.() ?? 0, proxyGid]);
      this.say.detail(`spire-server ${started.version} on ${CLUSTER_IP}:${SPIRE_PORT}, log ${join(dir, 'spire', 'server.log')}`);
      this.say.detail(`a join token for the vm's agent, and registration entries for ${SPIFFE_ID}: ${started.selectors.join(' (the harness), ')} (the proxy)`);
      this.say.detail('the harness runs spire-agent itself (spire.mode "managed") and restarts it if it dies');
      summary.push(['identity', `SPIRE ${started.version}: spire-server in the cluster, spire-agent run by the harness`]);
      return started.spire;
    }
    this.say.step('Starting a Workload API server that issues real X.509 SVIDs from a throwaway CA');
    this.spawn([process.execPath, join(this.root, 'dist', 'dev-workload-api.js'), '--socket', socket, '--spiffe-id', SPIFFE_ID, '--ca-cert', pki.caCert, '--ca-key', pki.caKey, '--ttl', '10m', '--log-level', 'warn'], join(dir, 'workload-api.log'));
    await waitUntil('the Workload API socket', async () => (existsSync(socket) ? true : undefined), 15_000);
    this.say.detail(`socket ${socket}, trust anchors ${pki.anchors}`);
    this.say.detail(`(a development stand-in for spire-agent${wanted === 'dev' ? '' : '; with SPIRE installed (scripts/install-spire.sh) the demo runs real SPIRE'})`);
    summary.push(['identity', `development Workload API (${wanted === 'dev' ? 'chosen with --identity dev' : 'SPIRE not installed'})`]);
    return undefined;
  }

  /** The workload fails its health check, the ExternalWorkload goes Ready=False, then it recovers. */
  private async probeFlap(cluster: DemoCluster, ewName: string): Promise<string> {
    const flag = join(this.dir!, UNHEALTHY_FILE);
    this.say.step(`The workload starts failing its health check (GET ${PROBE.httpGet.path} answers 503)`);
    const failedAt = Date.now();
    writeFileSync(flag, '');
    const down = await cluster.until(`ExternalWorkload ${ewName} Ready=False`, () => {
      const condition = cluster.ready(ewName);
      return condition?.status === 'False' ? condition : undefined;
    }, 60_000);
    const downAfter = (Date.now() - failedAt) / 1000;
    this.say.detail(`${ewName}: Ready=False (${down.reason ?? 'no reason'}) after ${downAfter.toFixed(1)} s: ${down.message ?? ''}`);
    this.say.detail('Linkerd stops sending it traffic; the proxy and the registration stay up');
    this.say.step('The workload is healthy again');
    const fixedAt = Date.now();
    rmSync(flag, { force: true });
    await cluster.until(`ExternalWorkload ${ewName} Ready=True`, () => (cluster.ready(ewName)?.status === 'True' ? true : undefined), 60_000);
    const upAfter = (Date.now() - fixedAt) / 1000;
    this.say.detail(`${ewName}: Ready=True again after ${upAfter.toFixed(1)} s`);
    return `Ready=False (${down.reason ?? 'no reason'}) ${downAfter.toFixed(1)} s after failing, True ${upAfter.toFixed(1)} s after recovering`;
  }

  /** --keep: what is running and how to look at it. */
  private pokeLines(workload: string, clusterLines: string[]): void {
    const bin = join(this.root, 'bin', 'mesh-harness.mjs');
    this.say.step('Left running (--keep); Ctrl-C removes everything');
    this.say.detail(`ip netns exec ${this.vm} ${process.execPath} ${bin} status --config ${join(this.dir!, 'config.json')}`);
    this.say.detail(`ip netns exec ${this.client} curl -s http://${VM_IP}:${WORKLOAD_PORT}/`);
    this.say.detail(`ip netns exec ${this.vm} curl -s http://127.0.0.1:${ADMIN_PORT}/status`);
    this.say.detail(`ip netns exec ${this.vm} iptables-save -t nat`);
    for (const line of clusterLines) this.say.detail(line);
    this.say.detail(`ExternalWorkload ${NAMESPACE}/${workload}; logs in ${this.dir}`);
  }

  /**
   * The development proxy, copied where the proxy user can read it: the checkout may sit
   * in a directory only root can enter (`/root`, a `mktemp -d`).
   */
  private async devProxy(dir: string): Promise<string> {
    const [user, group] = await Promise.all([resolveUser(PROXY_USER), resolveGroup(PROXY_GROUP)]);
    try {
      return writeDevProxyLauncher(dir, { uid: user.uid, gid: group.gid, label: `${PROXY_USER}:${PROXY_GROUP}` });
    } catch (err) {
      if (err instanceof DevProxyLaunchError) throw new CliError(`mesh-harness demo: ${err.message}`, EXIT.UNAVAILABLE);
      throw err;
    }
  }

  /**
   * Removes everything the playground made: stops the harness first (so it removes its
   * rules and its proxy drains), then every other process, the namespaces with whatever
   * still runs in them, and the directory. Every caller (the end of run(), a signal, a
   * second signal) gets the one cleanup in progress, which nothing interrupts.
   */
  cleanup(): Promise<void> {
    this.cleaning ??= this.doCleanup();
    return this.cleaning;
  }

  private async doCleanup(): Promise<void> {
    this.say.step('Cleaning up');
    if (this.harness && this.harness.exitCode === undefined) {
      this.harness.kill('SIGTERM');
      await Promise.race([this.harness, new Promise((r) => setTimeout(r, 10_000))]);
    }
    for (const child of this.children) child.kill('SIGKILL');
    await Promise.allSettled(this.children);
    await this.footprint?.remove();
    this.say.detail('namespaces, processes and files removed');
  }
}
