import { httpGetCheck } from './http.ts';
import type { CheckContext, CheckResult } from './result.ts';
import type { PortRef, ProbeHandler } from './spec.ts';
import { tcpSocketCheck } from './tcp.ts';

type PortResolved<H> = H extends { port: PortRef } ? Omit<H, 'port'> & { port: number } : H;

/** A network probe's check with its port resolved to a number: what the probe runner is asked to do. */
export type NetworkCheck = PortResolved<Exclude<ProbeHandler, { kind: 'exec' }>>;

/** Runs one httpGet, tcpSocket or grpc check from this process (the probe runner's side). */
export function runNetworkCheck(check: NetworkCheck, context: CheckContext): Promise<CheckResult> {
  switch (check.kind) {
    case 'httpGet':
      return httpGetCheck(check, context);
    case 'tcpSocket':
      return tcpSocketCheck(check, context);
    case 'grpc':
      // Loaded on the first grpc check: grpc-js is most of the runner's memory, and most VMs have no grpc probe.
      return import('./grpc.ts').then(({ grpcCheck }) => grpcCheck(check, context));
  }
}
