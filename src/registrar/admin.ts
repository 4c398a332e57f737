/**
 * The registrar's operational endpoints: /healthz (the process answers), /readyz (it can
 * serve: caches synced, Lease renewed, listening, not draining), /metrics (Prometheus).
 */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface RegistrarAdminOptions {
  listen: string;
  registry: Registry;
  /** Problems that make the replica unready; empty when ready. */
  unready: () => string[];
}

export class RegistrarAdmin {
  private server?: Server;

  constructor(private readonly options: RegistrarAdminOptions) {}

  async start(): Promise<number> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET') {
        res.writeHead(405).end();
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const problems = this.options.unready();
        res.writeHead(problems.length ? 503 : 200, { 'content-type': 'text/plain' }).end(problems.length ? `${problems.join('\n')}\n` : 'ok\n');
      } else if (path === '/metrics') {
        this.options.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.options.registry.contentType }).end(text),
          (err: Error) => res.writeHead(500).end(`${err.message}\n`),
        );
      } else {
        res.writeHead(404).end();
      }
    });
    this.server = server;
    const colon = this.options.listen.lastIndexOf(':');
    const host = this.options.listen.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(this.options.listen.slice(colon + 1));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot listen on ${this.options.listen} (admin): ${err.message}`)));
      server.listen(port, host, () => resolve());
    });
    const address = server.address();
    return typeof address === 'object' && address ? address.port : port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
