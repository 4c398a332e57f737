import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ComponentState } from '../component/component.ts';
import type { Logger } from '../log/logger.ts';
import type { HarnessMetrics } from './metrics.ts';

export interface AdminStatus {
  ready: boolean;
  version: string;
  pid: number;
  startedAt: string;
  /** What the harness is doing or waiting for (same text as systemd STATUS=). */
  status: string;
  components: Array<Omit<ComponentState, 'since'> & { since: string }>;
}

export interface AdminSource {
  components(): ComponentState[];
  /** Whether the harness is ready; false while components are still loading. */
  ready(): boolean;
  statusText(): string;
}

export interface AdminServerOptions {
  address: string;
  port: number;
  version: string;
  startedAt: Date;
  source: AdminSource;
  metrics: HarnessMetrics;
  log: Logger;
}

/** Serializes component states for /status and /ready bodies. */
export function statusBody(options: Pick<AdminServerOptions, 'version' | 'startedAt' | 'source'>): AdminStatus {
  const states = options.source.components();
  return {
    ready: options.source.ready(),
    version: options.version,
    pid: process.pid,
    startedAt: options.startedAt.toISOString(),
    status: options.source.statusText(),
    components: states.map((s) => ({ ...s, since: s.since.toISOString() })),
  };
}

/**
 * The admin HTTP server: /live, /ready, /status, /metrics. Loopback-only unless the
 * configuration explicitly allows otherwise (checked at config validation).
 */
export class AdminServer {
  private server: Server | undefined;

  constructor(private readonly options: AdminServerOptions) {}

  async listen(): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.options.log.error({ err, path: req.url }, 'admin request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    server.keepAliveTimeout = 5000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const hint = err.code === 'EADDRINUSE'
          ? `admin port ${this.options.port} on ${this.options.address} is already in use (is another mesh-harness running?); set admin.port`
          : err.code === 'EADDRNOTAVAIL'
            ? `admin address ${this.options.address} is not an address of this host; set admin.address`
            : `admin server cannot listen on ${this.options.address}:${this.options.port}: ${err.message}`;
        reject(new Error(hint));
      };
      server.once('error', onError);
      server.listen(this.options.port, this.options.address, () => {
        server.off('error', onError);
        resolve();
      });
    });
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      res.end('method not allowed\n');
      return;
    }
    switch (path) {
      case '/live':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('live\n');
        return;
      case '/ready': {
        const body = statusBody(this.options);
        const notReady = body.components.filter((c) => !c.ready).map((c) => ({ name: c.name, phase: c.phase, message: c.message, ...(c.lastError ? { lastError: c.lastError } : {}) }));
        json(res, body.ready ? 200 : 503, { ready: body.ready, status: body.status, notReady });
        return;
      }
      case '/status':
        json(res, 200, statusBody(this.options));
        return;
      case '/metrics': {
        for (const state of this.options.source.components()) this.options.metrics.observeComponent(state);
        const text = await this.options.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.options.metrics.registry.contentType });
        res.end(text);
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found; try /live, /ready, /status or /metrics\n');
    }
  }
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}
