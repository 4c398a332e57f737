/**
 * mesh-registrar under a simulated fleet. One registrar process on the EMBEDDED store (no
 * kube-apiserver: this measures the registrar's gRPC/TLS/controller cost, not the API
 * server's), and simulated harnesses in a separate process: N mutual-TLS gRPC streams,
 * each its own TLS connection with a real client SVID from the dev CA, hello then a
 * heartbeat every 10 s.
 * - registrar CPU (% of one core, /proc/PID/stat over a window) and RSS / RssAnon at each size;
 * - reconnect storm: every stream drops and reconnects within 10 s; handshake failures and
 *   workloads that went Ready=False (goal 0);
 * - time from harness death (stream gone without goodbye) to Ready=False, and from
 *   proxy-not-ready to Ready=False;
 * - refusals by reason (goal none: the fleet shares one SPIFFE ID, which its group admits as
 *   many times as there are machines, and connects from loopback with IPs the group allows).
 * Sizes: BENCH_REGISTRAR_STREAMS (default "1000,10000"). The storm and the latencies run at
 * the first size; larger sizes come after, and one whose streams are not all accepted within
 * connectBudgetMs(size) is reported with the count reached (larger ones are skipped).
 *
 * The same file is the two child processes: `registrar <dir>` and `clients <dir> <address>`.
 */
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DevCa } from '../src/dev/ca.ts';
import { externalWorkloadCrd } from '../src/dev/kube-apiserver.ts';
import { silentLogger } from '../src/log/logger.ts';
import { PROTOCOL_VERSION, registrationService, type ConnectStream, type RegistrarMessage } from '../src/protocol/registration.ts';
import { parseRegistrarConfig } from '../src/registrar/config.ts';
import { EmbeddedStore } from '../src/registrar/embedded-store.ts';
import { Registrar } from '../src/registrar/registrar.ts';
import { writeResults, type BenchRow } from './lib.ts';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const self = fileURLToPath(import.meta.url);
const TRUST_DOMAIN = 'root.linkerd.cluster.local';
const NAMESPACE = 'bench';
const GROUP = 'fleet';
const HEARTBEAT_MS = 10_000;
const SERVER_NAME = 'fleet.bench.vm.example';
/** Longer than the storm's 10 s spread, so a reconnect within it is invisible. */
const GRACE = '15s';
/** How long a fleet of this size may take to connect: the simulated fleet does the client side of every handshake on the same machine. */
const connectBudgetMs = (size: number) => Math.max(120_000, size * 30);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- registrar child
async function registrarChild(dir: string): Promise<void> {
  const crdFiles = [externalWorkloadCrd(root), join(root, 'deploy', 'kubernetes', 'externalgroup.crd.yaml')];
  const crds = crdFiles.map((file) => readFileSync(file, 'utf8'));
  const store = new EmbeddedStore({ crds, leaseNamespace: 'mesh-expansion' });
  const config = parseRegistrarConfig({
    listen: '127.0.0.1:0', adminListen: '127.0.0.1:0', certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), caFile: join(dir, 'ca.crt'),
    trustDomain: TRUST_DOMAIN, replica: 'bench', grace: GRACE, ttl: '10m', heartbeatInterval: '10s', store: { kind: 'embedded', crdFiles },
  });
  const registrar = new Registrar({ config, log: silentLogger(), store });
  await registrar.start();
  await store.applyGroup({
    apiVersion: 'meshexpansion.dev/v1alpha1', kind: 'ExternalGroup', metadata: { name: GROUP, namespace: NAMESPACE },
    spec: { allowedIdentities: [`spiffe://${TRUST_DOMAIN}/vm/*`], maxWorkloadsPerIdentity: 1_000_000, allowedIPs: ['10.9.0.0/16'], template: { ports: [{ port: 8080, name: 'http' }], serverName: SERVER_NAME } },
  });
  // Every transition to Ready=False, with its time: the parent counts flaps and latencies from these.
  const last = new Map<string, string>();
  // Every ExternalWorkload or ExternalGroup event is one write the registrar made (create, update, status, delete).
  let writes = 0;
  store.subscribe((event) => {
    if (event.kind === 'ExternalGroup') writes += 1;
    if (event.kind !== 'ExternalWorkload') return;
    writes += 1;
    const ready = event.object.status?.conditions?.find((c) => c.type === 'Ready');
    const status = event.type === 'deleted' ? 'Deleted' : ready?.status ?? 'Unknown';
    const name = event.object.metadata.name;
    if (status === 'False' && last.get(name) !== 'False') process.stdout.write(`${JSON.stringify({ notReady: name, at: Date.now(), reason: ready?.reason })}\n`);
    last.set(name, status);
  });
  process.stdout.write(`${JSON.stringify({ listening: registrar.grpcPort })}\n`);
  process.on('SIGTERM', () => process.exit(0));
  // Where the memory is: the JS heap after a full collection, and memory outside it (TLS, HTTP/2 sessions, buffers).
  process.on('SIGUSR2', () => {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    process.stdout.write(`${JSON.stringify({ writes, memory: { rssMb: m.rss / 2 ** 20, heapUsedMb: m.heapUsed / 2 ** 20, externalMb: m.external / 2 ** 20, arrayBuffersMb: m.arrayBuffers / 2 ** 20 } })}\n`);
  });
}

// ---------------------------------------------------------------- clients child
interface Client { channel: grpc.Client; call?: ConnectStream; accepted: boolean; node: string }

async function clientsChild(dir: string, address: string): Promise<void> {
  const svid = JSON.parse(readFileSync(join(dir, 'svid.json'), 'utf8')) as { chain: string[]; keyPem: string };
  const anchors = readFileSync(join(dir, 'ca.crt'));
  const Service = registrationService();
  const credentials = grpc.credentials.createSsl(anchors, Buffer.from(svid.keyPem), Buffer.from(svid.chain.join('')), { checkServerIdentity: () => undefined });
  const clients: Client[] = [];
  let failures = 0;
  const refusals: Record<string, number> = {};
  const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

  const open = (c: Client) => {
    // Its own subchannel pool: every simulated harness is its own TCP + TLS connection, as in reality.
    c.channel ??= new Service(address, credentials, { 'grpc.use_local_subchannel_pool': 1, 'grpc.ssl_target_name_override': 'mesh-registrar' });
    c.accepted = false;
    const call = (c.channel as unknown as { Connect(): ConnectStream }).Connect();
    c.call = call;
    call.on('data', (m: RegistrarMessage) => {
      if ('accepted' in m && m.accepted) c.accepted = true;
      if ('refused' in m && m.refused) refusals[m.refused.reason] = (refusals[m.refused.reason] ?? 0) + 1;
    });
    // A stream that fails or ends on its own comes back after a jittered 1-3 s, as a harness's backoff would.
    let retried = false;
    const retry = () => {
      if (retried || c.call !== call) return;
      retried = true;
      c.call = undefined;
      c.accepted = false;
      setTimeout(() => c.call === undefined && c.channel && open(c), 1000 + Math.random() * 2000);
    };
    call.on('error', (err: grpc.ServiceError) => {
      if (c.call === call && !c.accepted && err.code !== grpc.status.CANCELLED) failures += 1;
      retry();
    });
    call.on('end', retry);
    call.write({ hello: { protocol_version: PROTOCOL_VERSION, group: GROUP, namespace: NAMESPACE, node_name: c.node, workload_ips: ['10.9.0.1'], workload_name: '', server_name: SERVER_NAME, machine_id: c.node, versions: { harness: 'bench', proxy: 'bench', spire_agent: 'bench' }, state: { proxy_ready: true, probes: [], reason: '', message: '' } } } as never);
  };
  // Heartbeats every 10 s, spread over the interval like a real fleet's.
  setInterval(() => {
    const slice = Math.ceil(clients.length / 10);
    const start = (Math.floor(Date.now() / 1000) % 10) * slice;
    for (const c of clients.slice(start, start + slice)) if (c.accepted && c.call && !c.call.writableEnded) c.call.write({ heartbeat: { sequence: Date.now() } });
  }, 1000).unref();

  const drop = (c: Client) => {
    const call = c.call;
    c.call = undefined;
    c.accepted = false;
    call?.cancel();
    c.channel.close();
    (c as Partial<Client>).channel = undefined;
  };

  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, arg] = line.split(' ');
    if (cmd === 'grow') {
      const target = Number(arg);
      while (clients.length < target) {
        const c = { node: `vm-${clients.length}`, accepted: false } as Client;
        clients.push(c);
        open(c);
        if (clients.length % 50 === 0) await sleep(5); // let handshakes progress instead of queueing all at once
      }
      out({ grown: clients.length });
    } else if (cmd === 'count') out({ accepted: clients.filter((c) => c.accepted).length, failures, refusals });
    else if (cmd === 'storm') {
      // Every stream drops (no goodbye) and reconnects at a random moment within 10 s.
      failures = 0;
      for (const c of clients) {
        drop(c);
        setTimeout(() => open(c), Math.random() * 10_000);
      }
      out({ storm: clients.length });
    } else if (cmd === 'kill') {
      const c = clients[Number(arg)]!;
      drop(c);
      out({ killed: c.node, at: Date.now() });
    } else if (cmd === 'revive') {
      // The harness killed for the latency measurement comes back, so the fleet is whole again.
      const c = clients[Number(arg)]!;
      if (!c.call) open(c);
      out({ revived: c.node });
    } else if (cmd === 'unready') {
      const c = clients[Number(arg)]!;
      c.call?.write({ state_change: { state: { proxy_ready: false, probes: [], reason: 'ProxyNotReady', message: 'bench' } } });
      out({ unready: c.node, at: Date.now() });
    } else if (cmd === 'exit') process.exit(0);
  }
}

// ---------------------------------------------------------------- parent
class Child {
  private readonly waiters: Array<{ match: (o: Record<string, unknown>) => boolean; resolve: (o: Record<string, unknown>) => void; reject: (err: Error) => void }> = [];
  readonly events: Array<Record<string, unknown>> = [];
  constructor(readonly process: ChildProcess, readonly what: string) {
    // A child that dies fails the bench at once instead of after a timeout.
    process.on('exit', (code, signal) => {
      for (const w of this.waiters.splice(0)) w.reject(new Error(`${what} child exited (${code ?? signal})`));
    });
    createInterface({ input: process.stdout! }).on('line', (line) => {
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      this.events.push(o);
      const i = this.waiters.findIndex((w) => w.match(o));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(o);
    });
  }
  /** The next matching line; with past, also one already received (for lines that may race the request). */
  next(match: (o: Record<string, unknown>) => boolean, timeoutMs = 60_000, past = false): Promise<Record<string, unknown>> {
    const seen = past ? this.events.find(match) : undefined;
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for the ${this.what} child`)), timeoutMs);
      this.waiters.push({ match, resolve: (o) => { clearTimeout(timer); resolve(o); }, reject });
    });
  }
  send(line: string): void {
    this.process.stdin!.write(`${line}\n`);
  }
}

function startChild(args: string[], ulimit = false): Child {
  const node = [process.execPath, '--import', 'tsx', '--expose-gc', '--max-old-space-size=4096', ...(args[0] === 'registrar' ? (process.env.BENCH_REGISTRAR_NODE_FLAGS ?? '').split(' ').filter(Boolean) : []), self, ...args].map((a) => `'${a}'`).join(' ');
  // The file descriptor limit is raised in the child only: one socket per stream.
  const child = spawn('bash', ['-c', `${ulimit ? 'ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); ' : ''}exec ${node}`], { stdio: ['pipe', 'pipe', 'inherit'], cwd: root });
  return new Child(child, args[0]!);
}

function procStat(pid: number): { cpu: number; rssMb: number; rssAnonMb: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(status.split('\n').find((l) => l.startsWith(key))?.replace(/\D+/g, '') ?? 0) / 1024;
  return { cpu: (Number(fields[11]) + Number(fields[12])) / 100, rssMb: kb('VmRSS:'), rssAnonMb: kb('RssAnon:') };
}

async function main(): Promise<void> {
  const sizes = (process.env.BENCH_REGISTRAR_STREAMS ?? '1000,10000').split(',').map(Number);
  const dir = mkdtempSync(join(tmpdir(), 'mh-regbench-'));
  const children: Child[] = [];
  const cleanup = () => {
    for (const c of children) if (c.process.exitCode === null) c.process.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => { cleanup(); process.exit(130); });
  const rows: BenchRow[] = [];
  try {
    const ca = await DevCa.create({ trustDomain: TRUST_DOMAIN });
    const serving = await ca.issueSvid({ spiffeId: `spiffe://${TRUST_DOMAIN}/ns/mesh-expansion/sa/mesh-registrar`, ttlMs: 3_600_000 });
    const client = await ca.issueSvid({ spiffeId: `spiffe://${TRUST_DOMAIN}/vm/bench`, ttlMs: 3_600_000 });
    writeFileSync(join(dir, 'ca.crt'), ca.bundlePem);
    writeFileSync(join(dir, 'tls.crt'), serving.chain.join(''));
    writeFileSync(join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'svid.json'), JSON.stringify({ chain: client.chain, keyPem: client.keyPem }));

    const registrar = startChild(['registrar', dir], true);
    children.push(registrar);
    const { listening } = await registrar.next((o) => 'listening' in o);
    const clients = startChild(['clients', dir, `127.0.0.1:${listening as number}`], true);
    children.push(clients);
    const pid = registrar.process.pid!;
    await sleep(2000);
    const heap = async () => {
      registrar.process.kill('SIGUSR2');
      const o = await registrar.next((line) => 'memory' in line);
      return { ...(o.memory as Record<string, number>), writes: o.writes as number } as Record<string, number>;
    };
    const idleHeap = await heap();
    const idle = procStat(pid);
    rows.push({ name: '0 streams: registrar RSS / RssAnon', value: idle.rssMb, unit: 'MB', detail: { rssAnonMb: idle.rssAnonMb } });

    /** Grows the fleet to size and measures the registrar there; false when it did not get there in time. */
    const measure = async (size: number): Promise<boolean> => {
      const began = Date.now();
      clients.send(`grow ${size}`);
      await clients.next((o) => 'grown' in o, connectBudgetMs(size));
      let accepted = 0;
      while (Date.now() - began < connectBudgetMs(size)) {
        clients.send('count');
        accepted = (await clients.next((o) => 'accepted' in o)).accepted as number;
        if (accepted >= size) break;
        await sleep(1000);
      }
      clients.send('count');
      const refused = (await clients.next((o) => 'accepted' in o)).refusals as Record<string, number>;
      rows.push({ name: `${size} streams: connected within ${connectBudgetMs(size) / 1000} s`, value: accepted, unit: 'streams', detail: { seconds: (Date.now() - began) / 1000 } });
      rows.push({ name: `${size} streams: refusals while connecting (all sizes so far)`, value: Object.values(refused).reduce((a, b) => a + b, 0), unit: 'streams', detail: { byReason: refused } });
      if (accepted < size) return false;
      await sleep(5000); // the connect burst settles
      const writesBefore = (await heap()).writes!;
      const a = procStat(pid);
      const windowMs = 30_000;
      await sleep(windowMs);
      const b = procStat(pid);
      const writesAfter = (await heap()).writes!;
      rows.push({ name: `${size} streams: ExternalWorkload and ExternalGroup writes per minute at steady state`, value: ((writesAfter - writesBefore) * 60_000) / windowMs, unit: 'writes/min' });
      rows.push({ name: `${size} streams: registrar CPU (heartbeats every 10 s)`, value: ((b.cpu - a.cpu) / (windowMs / 1000)) * 100, unit: '% of one core' });
      rows.push({ name: `${size} streams: registrar RSS`, value: b.rssMb, unit: 'MB' });
      rows.push({ name: `${size} streams: registrar RssAnon`, value: b.rssAnonMb, unit: 'MB' });
      rows.push({ name: `${size} streams: registrar RSS per stream (above idle)`, value: ((b.rssMb - idle.rssMb) * 1024) / size, unit: 'KiB' });
      const h = await heap();
      // The sampled RSS above includes whatever garbage V8 has not collected yet at that moment; after a full
      // collection it is what the live streams hold (what a memory limit must fit, given heap headroom).
      rows.push({ name: `${size} streams: registrar RSS per stream after a full GC (above idle after GC)`, value: ((h.rssMb! - idleHeap.rssMb!) * 1024) / size, unit: 'KiB' });
      rows.push({ name: `${size} streams: JS heap per stream after GC (above idle)`, value: ((h.heapUsedMb! - idleHeap.heapUsedMb!) * 1024) / size, unit: 'KiB', detail: { idle: idleHeap, now: h } });
      return true;
    };
    // The storm and the latencies at the first size; larger sizes afterwards, as far as the machine allows.
    const reached = sizes[0]!;
    if (!(await measure(reached))) throw new Error(`${reached} streams did not all connect within ${connectBudgetMs(reached) / 1000} s`);

    /** Every stream drops and reconnects at a random moment within 10 s (a replica restart): failures and flaps. */
    const storm = async (size: number): Promise<void> => {
      const notReadyBefore = registrar.events.filter((o) => 'notReady' in o).length;
      clients.send('storm');
      await clients.next((o) => 'storm' in o);
      const stormBegan = Date.now();
      let after = { accepted: 0, failures: 0, refusals: {} as Record<string, number> };
      let allBackAfter: number | undefined;
      while (Date.now() - stormBegan < connectBudgetMs(size)) {
        await sleep(1000);
        clients.send('count');
        after = (await clients.next((o) => 'accepted' in o)) as typeof after;
        if (after.accepted >= size && Date.now() - stormBegan > 10_000) {
          allBackAfter = (Date.now() - stormBegan) / 1000;
          break;
        }
      }
      await sleep(20_000); // past the grace period: a flap would have been written by now
      const flaps = registrar.events.filter((o) => 'notReady' in o).length - notReadyBefore;
      rows.push({ name: `${size} streams, storm (all reconnect within 10 s): reconnected`, value: after.accepted, unit: 'streams', detail: { allBackAfterSeconds: allBackAfter ?? null } });
      rows.push({ name: `${size} streams, storm: handshake/stream failures`, value: after.failures, unit: 'streams' });
      rows.push({ name: `${size} streams: refusals so far (connect and storms)`, value: Object.values(after.refusals).reduce((a, b) => a + b, 0), unit: 'streams', detail: { byReason: after.refusals } });
      rows.push({ name: `${size} streams, storm: workloads flapped to Ready=False (grace ${GRACE})`, value: flaps, unit: 'workloads' });
    };
    await storm(reached);

    // Harness death (no goodbye) -> Ready=False; proxy not ready -> Ready=False.
    clients.send('kill 0');
    const killed = await clients.next((o) => 'killed' in o);
    const dead = await registrar.next((o) => o.notReady !== undefined && (o.at as number) >= (killed.at as number), 60_000, true);
    rows.push({ name: `harness death -> Ready=False (grace ${GRACE})`, value: ((dead.at as number) - (killed.at as number)) / 1000, unit: 's', detail: { reason: dead.reason } });
    clients.send('unready 1');
    const unready = await clients.next((o) => 'unready' in o);
    const down = await registrar.next((o) => o.notReady !== undefined && o.notReady !== dead.notReady && (o.at as number) >= (unready.at as number), 30_000, true);
    rows.push({ name: 'proxy not ready -> Ready=False', value: ((down.at as number) - (unready.at as number)) / 1000, unit: 's', detail: { reason: down.reason } });
    clients.send('revive 0');
    await clients.next((o) => 'revived' in o);
    for (const size of sizes.slice(1)) {
      try {
        if (!(await measure(size))) break;
        await storm(size);
      } catch (err) {
        // The simulated fleet's own process saturating (it does the client side of every handshake) ends the attempt, not the bench.
        rows.push({ name: `${size} streams: not reached`, value: 0, unit: 'streams', detail: { error: (err as Error).message } });
        break;
      }
    }
    clients.send('exit');
    writeResults('registrar', rows.map((r) => ({ ...r, detail: { ...r.detail, store: 'embedded', note: 'one 2-core machine: the simulated fleet (client side of every handshake) shares it with the registrar' } })));
  } finally {
    cleanup();
  }
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'registrar') await registrarChild(args[0]!);
else if (mode === 'clients') await clientsChild(args[0]!, args[1]!);
else {
  try {
    await main();
  } catch (err) {
    process.stderr.write(`registrar bench: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
