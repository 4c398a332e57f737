/**
 * Real listeners that play a workload for probe tests: an HTTP server whose status can be
 * switched, a gRPC server with the standard health service, and a black hole that accepts
 * connections and never answers. All on 127.0.0.1 with ephemeral ports, closed at teardown.
 */
import * as grpc from '@grpc/grpc-js';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { healthService, type ServingStatus } from '../../src/probes/grpc.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

function listen(t: Teardown, server: Server, port = 0): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

export interface HttpWorkload {
  port: number;
  /** Status answered from now on. */
  status: number;
  /** Responses sent, by status. */
  served: Map<number, number>;
  /** Paths requested, in order. */
  paths: string[];
  headers: IncomingMessage['headers'][];
  /** Extra routes: path -> handler. */
  routes: Map<string, (req: IncomingMessage, res: ServerResponse) => void>;
}

export async function httpWorkload(t: Teardown, options: { tls?: { cert: string; key: string } } = {}): Promise<HttpWorkload> {
  const workload: HttpWorkload = { port: 0, status: 200, served: new Map(), paths: [], headers: [], routes: new Map() };
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    workload.paths.push(req.url ?? '');
    workload.headers.push(req.headers);
    const route = workload.routes.get(req.url ?? '');
    if (route) return route(req, res);
    workload.served.set(workload.status, (workload.served.get(workload.status) ?? 0) + 1);
    res.writeHead(workload.status, { 'content-type': 'text/plain' });
    res.end(`status ${workload.status}\n`);
  };
  const server = options.tls ? createHttpsServer(options.tls, handler) : createHttpServer(handler);
  workload.port = await listen(t, server as unknown as Server);
  return workload;
}

/** A TCP listener that can be closed and reopened on the same port. */
export class TcpWorkload {
  private server: Server | undefined;
  private constructor(readonly port: number) {}

  static async start(t: Teardown): Promise<TcpWorkload> {
    const server = createTcpServer((s) => s.end());
    const port = await listen(t, server);
    const workload = new TcpWorkload(port);
    workload.server = server;
    t.teardown(() => workload.close());
    return workload;
  }

  close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  async reopen(t: Teardown): Promise<void> {
    const server = createTcpServer((s) => s.end());
    await listen(t, server, this.port);
    this.server = server;
  }
}

/** Accepts connections and never sends a byte. */
export async function blackHole(t: Teardown): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const server = createTcpServer(() => {
    accepted += 1;
  });
  const port = await listen(t, server);
  return { port, accepted: () => accepted };
}

/** A grpc-js server implementing grpc.health.v1.Health/Check from a status table. */
export async function grpcHealthServer(t: Teardown): Promise<{ port: number; statuses: Map<string, ServingStatus>; checks: () => number }> {
  const statuses = new Map<string, ServingStatus>([['', 'SERVING']]);
  let checks = 0;
  const server = new grpc.Server();
  server.addService(healthService().service, {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<{ status: ServingStatus }>) => {
      checks += 1;
      const status = statuses.get(call.request.service);
      if (status === undefined) return callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      callback(null, { status });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  t.teardown(() => server.forceShutdown());
  return { port, statuses, checks: () => checks };
}
