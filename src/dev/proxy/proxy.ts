/**
 * The development stand-in for linkerd2-proxy. It honours the real proxy's contract as the
 * harness sees it (see docs/proxy.md) and nothing more: no TLS, no HTTP routing, no
 * control-plane calls. It exists for the playground and the tests; production runs the
 * real proxy.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { verifySvid } from '../../identity/verify.ts';
import { WorkloadApiClient, type X509Svid } from '../../identity/workload-api-client.ts';
import type { DevProxyConfig, SocketAddress } from './config.ts';
import { INBOUND_MARKER, OUTBOUND_MARKER } from './markers.ts';
import { originalDestination } from './original-dst.ts';

/** setTimeout cannot wait longer than this. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** An outbound client that never closes its side is cut off after this. */
const OUTBOUND_LINGER_MS = 10_000;


/** A float as the Rust prometheus-client writes one: always with a fraction ("1763769600.0"). */
function promFloat(value: number): string {
  return Number.isInteger(value) ? `${value}.0` : String(value);
}

function hostPort(address: SocketAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function listen(server: Server | HttpServer, address: SocketAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export class DevProxy {
  private readonly listeners: Server[] = [];
  private admin: HttpServer | undefined;
  private client: WorkloadApiClient | undefined;
  private readonly connections = new Set<Socket>();
  private svid: X509Svid | undefined;
  /** The installed certificate; kept after it expires, as the real proxy keeps using it. */
  private certified: { serial: string; notAfter: Date } | undefined;
  /** The admin readiness latch: released once, never closed again (see ready()). */
  private released = false;
  /** When the last certificate was installed, and how many were (the real proxy's refresh metrics). */
  private refreshedAt: Date | undefined;
  private refreshes = 0;
  /** The identity task panicked; nothing fetches SVIDs any more. */
  private identityDead = false;
  private expiryTimer: NodeJS.Timeout | undefined;
  private draining = false;
  /** Called when the last open connection closes while draining. */
  private onIdle: (() => void) | undefined;
  private readonly counts = { inbound: 0, outbound: 0 };

  constructor(
    private readonly config: DevProxyConfig,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * `/ready` as linkerd2-proxy answers it: a latch released when the identity task first
   * installs a certificate for SERVER_ID, *or* when that task dies, and never closed again
   * (an expired certificate leaves it 200). Whether the proxy actually holds a valid
   * certificate shows only in identity_cert_expiration_timestamp_seconds, which is why the
   * harness reads both.
   */
  ready(): boolean {
    return this.released && !this.draining;
  }

  async start(): Promise<void> {
    this.admin = createHttpServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { 'content-type': 'text/plain' }).end('method not allowed\n');
      } else if (path === '/ready') {
        const ready = this.ready();
        res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
      } else if (path === '/live') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('live\n');
      } else if (path === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(this.metrics());
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    });
    await listen(this.admin, this.config.admin);
    this.log.info({ address: hostPort(this.config.admin) }, `Admin interface on ${hostPort(this.config.admin)}`);

    // Half-close passes through, as with the real proxy: a client may finish sending and still read the answer.
    const inbound = createServer({ allowHalfOpen: true }, (socket) => this.track(socket, () => this.onInbound(socket)));
    await listen(inbound, this.config.inbound);
    this.listeners.push(inbound);
    this.log.info(`Inbound interface on ${hostPort(this.config.inbound)}`);
    for (const address of this.config.outbound) {
      const outbound = createServer((socket) => this.track(socket, () => this.onOutbound(socket)));
      await listen(outbound, address);
      this.listeners.push(outbound);
      this.log.info(`Outbound interface on ${hostPort(address)}`);
    }

    this.client = new WorkloadApiClient({ address: `unix://${this.config.workloadApiSocket}`, log: this.log });
    this.client.on('update', (svids: X509Svid[]) => this.onSvids(svids));
    this.client.on('error', (err: { errno?: string }) => {
      if (err.errno === 'EACCES') this.identityTaskPanics();
    });
    this.client.start();
    this.log.info({ id: this.config.serverId }, `Fetching the SVID for ${this.config.serverId} from the Workload API at ${this.config.workloadApiSocket}`);
  }

  /**
   * SIGTERM: stop accepting, give open connections up to the shutdown grace period, then
   * close the rest and everything else.
   */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.log.info({ open: this.connections.size, graceMs: this.config.shutdownGraceMs }, 'Received shutdown signal; draining connections');
    for (const listener of this.listeners) listener.close();
    if (this.connections.size) {
      let graceTimer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.onIdle = resolve;
        graceTimer = setTimeout(resolve, this.config.shutdownGraceMs);
      });
      clearTimeout(graceTimer);
      if (this.connections.size) this.log.warn({ open: this.connections.size }, 'Shutdown grace period elapsed; closing remaining connections');
      for (const socket of this.connections) socket.destroy();
    }
    clearTimeout(this.expiryTimer);
    await this.client?.close();
    await new Promise<void>((resolve) => (this.admin ? this.admin.close(() => resolve()) : resolve()));
    this.admin?.closeAllConnections();
    this.log.info('Shutdown complete');
  }

  private remember(socket: Socket): void {
    this.connections.add(socket);
    socket.on('close', () => {
      this.connections.delete(socket);
      if (this.connections.size === 0) this.onIdle?.();
    });
  }

  private track(socket: Socket, handle: () => Promise<void>): void {
    this.remember(socket);
    socket.on('error', () => socket.destroy());
    handle().catch((err: unknown) => {
      this.log.warn({ err: String(err) }, 'connection failed');
      socket.destroy();
    });
  }

  /** Inbound: like the proxy in front of the workload, hand the bytes to the workload port on loopback. */
  private async onInbound(socket: Socket): Promise<void> {
    this.counts.inbound += 1;
    const original = await originalDestination(socket);
    const originalPort = original ? Number(original.slice(original.lastIndexOf(':') + 1)) : undefined;
    const ports = this.config.inboundPorts;
    const port = originalPort !== undefined && ports.includes(originalPort) ? originalPort : ports[0];
    if (port === undefined) {
      socket.end(`${INBOUND_MARKER} ${original ?? 'unknown'}\n`);
      return;
    }
    const upstream = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    this.remember(upstream);
    upstream.on('error', (err) => {
      this.log.warn({ port, err: err.message }, `inbound connection to the workload on 127.0.0.1:${port} failed`);
      socket.destroy();
    });
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
    socket.pipe(upstream);
    upstream.pipe(socket);
  }

  /** Outbound: answer with a marker naming where the application was going, so tests can see the redirect. */
  private async onOutbound(socket: Socket): Promise<void> {
    this.counts.outbound += 1;
    const original = await originalDestination(socket);
    socket.resume();
    socket.setTimeout(OUTBOUND_LINGER_MS, () => socket.destroy());
    socket.end(`${OUTBOUND_MARKER} ${original ?? 'unknown'}\n`);
  }

  /**
   * What linkerd2-proxy does when it cannot open the Workload API socket: its SPIRE client
   * treats the I/O error as impossible and panics, the identity task ends, the sender of
   * the readiness watch is dropped and the admin latch opens without a certificate.
   */
  private identityTaskPanics(): void {
    if (this.identityDead) return;
    this.identityDead = true;
    this.log.error(`thread 'main' panicked: spire client must gracefully handle errors: Os { code: 13, kind: PermissionDenied, message: "Permission denied" } (${this.config.workloadApiSocket})`);
    this.log.error("thread 'main' panicked: identity sender must be held");
    void this.client?.close();
    this.released = true;
  }

  private onSvids(svids: X509Svid[]): void {
    const svid = svids.find((s) => s.spiffeId === this.config.serverId);
    if (!svid) {
      const offered = svids.map((s) => s.spiffeId).join(', ') || 'none';
      // The installed certificate stays in use until it expires.
      this.log.warn(`the Workload API offers no SVID for ${this.config.serverId} (offered: ${offered}); keeping the installed certificate`);
      return;
    }
    this.svid = svid;
    this.check();
  }

  /** Verifies the held SVID now; also runs when it expires, so /ready turns 503 then. */
  private check(): void {
    clearTimeout(this.expiryTimer);
    if (!this.svid) return;
    const result = verifySvid(this.svid, { anchors: this.config.anchors, expectedId: this.config.serverId, now: this.now(), anchorsSource: 'LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS' });
    if (!result.ok) {
      this.uncertify(result.reason);
      return;
    }
    if (this.certified?.serial !== result.serial) {
      this.log.info({ id: result.spiffeId, serial: result.serial, notAfter: result.notAfter.toISOString() }, `Certified identity id=${result.spiffeId}`);
      this.certified = { serial: result.serial, notAfter: result.notAfter };
      this.refreshedAt = this.now();
      this.refreshes += 1;
    }
    this.released = true;
    const untilExpiry = result.notAfter.getTime() - this.now().getTime() + 1;
    this.expiryTimer = setTimeout(() => this.check(), Math.min(Math.max(untilExpiry, 0), MAX_TIMER_MS));
    this.expiryTimer.unref();
  }

  private uncertify(reason: string): void {
    if (this.certified) this.log.warn({ reason }, `Identity certificate is no longer valid: ${reason}`);
    else this.log.warn({ reason }, `Cannot certify identity: ${reason}`);
  }

  private metrics(): string {
    const lines = [
      // As linkerd2-proxy registers them (linkerd/identity/src/metrics.rs under the
      // identity_cert prefix): f64 seconds, 0 until a certificate is installed, and the
      // expiry stays at the last installed certificate's even once it has passed.
      "# HELP identity_cert_expiration_timestamp_seconds Time when this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch).",
      '# TYPE identity_cert_expiration_timestamp_seconds gauge',
      `identity_cert_expiration_timestamp_seconds ${promFloat(this.certified ? this.certified.notAfter.getTime() / 1000 : 0)}`,
      "# HELP identity_cert_refresh_timestamp_seconds Time when this proxy's current mTLS identity certificate was last updated.",
      '# TYPE identity_cert_refresh_timestamp_seconds gauge',
      `identity_cert_refresh_timestamp_seconds ${promFloat(this.refreshedAt ? this.refreshedAt.getTime() / 1000 : 0)}`,
      "# HELP identity_cert_refreshes_total The total number of times this proxy's mTLS identity certificate has been refreshed by the Identity provider.",
      '# TYPE identity_cert_refreshes_total counter',
      `identity_cert_refreshes_total{result="ok"} ${this.refreshes}`,
      '# HELP dev_proxy_connections_total Connections accepted.',
      '# TYPE dev_proxy_connections_total counter',
      `dev_proxy_connections_total{direction="inbound"} ${this.counts.inbound}`,
      `dev_proxy_connections_total{direction="outbound"} ${this.counts.outbound}`,
      '# HELP dev_proxy_open_connections Connections open now (both sides of forwarded ones).',
      '# TYPE dev_proxy_open_connections gauge',
      `dev_proxy_open_connections ${this.connections.size}`,
    ];
    return `${lines.join('\n')}\n`;
  }
}
