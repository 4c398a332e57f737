import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { packageRoot } from '../util/paths.ts';
import { elapsedMs, timeoutText, type CheckContext, type CheckResult } from './result.ts';
import { hostPort } from './spec.ts';

/** HealthCheckResponse.status as @grpc/proto-loader decodes it (enums as names). */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

type HealthClient = grpc.Client & {
  Check(request: { service: string }, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null, response?: { status: ServingStatus }) => void): grpc.ClientUnaryCall;
};

let service: grpc.ServiceClientConstructor | undefined;

/** The standard `grpc.health.v1.Health` service (proto/grpc/health/v1/health.proto); `.service` is what a server registers. */
export function healthService(): grpc.ServiceClientConstructor {
  if (service) return service;
  const definition = loadSync(join(packageRoot(), 'proto', 'grpc', 'health', 'v1', 'health.proto'), {
    keepCase: true,
    defaults: true,
    enums: String,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  service = pkg.grpc.health.v1.Health;
  return service;
}

function errorText(err: grpc.ServiceError, service: string, timeoutMs: number, latencyMs: number): string {
  switch (err.code) {
    case grpc.status.DEADLINE_EXCEEDED:
      return timeoutText(timeoutMs);
    case grpc.status.UNIMPLEMENTED:
      return `the server does not implement grpc.health.v1.Health (after ${latencyMs} ms)`;
    case grpc.status.NOT_FOUND:
      return `service "${service}" is unknown to the server (after ${latencyMs} ms)`;
    default:
      return `${grpc.status[err.code] ?? err.code}: ${err.details || err.message} after ${latencyMs} ms`;
  }
}

/**
 * A grpc probe, as kubelet does it: one Health/Check call over a fresh plaintext
 * connection, success only for SERVING. A fresh connection (own subchannel pool) per
 * check: a shared channel sitting in reconnect backoff would report a recovered server
 * as down for up to two minutes.
 */
export function grpcCheck(target: { host: string; port: number; service: string }, context: CheckContext): Promise<CheckResult> {
  const start = performance.now();
  const what = `gRPC health ${hostPort(target.host, target.port)}${target.service ? ` service "${target.service}"` : ''}`;
  const Health = healthService();
  const client = new Health(hostPort(target.host, target.port), grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.enable_retries': 0,
    'grpc.primary_user_agent': 'mesh-harness-probe',
  }) as unknown as HealthClient;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (ok: boolean, message: string) => {
      if (settled) return;
      settled = true;
      context.signal.removeEventListener('abort', onAbort);
      client.close();
      resolve({ ok, latencyMs: elapsedMs(start), message: `${what}: ${message}` });
    };
    const call = client.Check({ service: target.service }, { deadline: Date.now() + context.timeoutMs }, (err, response) => {
      const latencyMs = elapsedMs(start);
      if (err) return finish(false, errorText(err, target.service, context.timeoutMs, latencyMs));
      const status = response?.status ?? 'UNKNOWN';
      finish(status === 'SERVING', `${status} after ${latencyMs} ms`);
    });
    const onAbort = () => {
      call.cancel();
      finish(false, 'cancelled');
    };
    context.signal.addEventListener('abort', onAbort, { once: true });
  });
}
