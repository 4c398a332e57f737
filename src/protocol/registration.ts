/**
 * The harness <-> registrar protocol (proto/meshexpansion/registration/v1), loaded once
 * and shared by both sides. Field names are the proto's (keepCase); absent fields decode
 * to their zero values, which the proto's compatibility rules keep safe.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { packageRoot } from '../util/paths.ts';

/** The protocol version this code speaks (Hello.protocol_version, Accepted.protocol_version). */
export const PROTOCOL_VERSION = 1;

export const PROTO_FILE = join('proto', 'meshexpansion', 'registration', 'v1', 'registration.proto');

export interface Versions {
  harness: string;
  proxy: string;
  spire_agent: string;
}

export interface ProbeResult {
  name: string;
  success: boolean;
  message: string;
  /** Milliseconds since the epoch (int64, decoded as a string). */
  observed_unix_ms: string | number;
}

export interface WorkloadState {
  proxy_ready: boolean;
  probes: ProbeResult[];
  reason: string;
  message: string;
}

export interface Hello {
  protocol_version: number;
  group: string;
  namespace: string;
  node_name: string;
  workload_ips: string[];
  versions?: Versions | null;
  workload_name: string;
  state?: WorkloadState | null;
  server_name: string;
  machine_id: string;
  proxy_inbound_port: number;
}

export type HarnessMessage =
  | { hello: Hello; message?: 'hello' }
  | { state_change: { state: WorkloadState | null }; message?: 'state_change' }
  | { heartbeat: { sequence: string | number }; message?: 'heartbeat' }
  | { goodbye: { reason: string }; message?: 'goodbye' };

export interface ProxySettings {
  default_inbound_policy: string;
  cluster_networks: string[];
  /** The control plane's proxy image (linkerd-config); empty when unknown. */
  image_name: string;
  image_version: string;
}

export interface GroupSettings {
  probes_json: string;
  proxy?: ProxySettings | null;
}

export interface Accepted {
  protocol_version: number;
  workload_name: string;
  heartbeat_interval_seconds: number;
  settings?: GroupSettings | null;
  replica: string;
}

export interface Refused {
  reason: string;
  message: string;
  retry_after_seconds: number;
}

export type RegistrarMessage =
  | { accepted: Accepted; message?: 'accepted' }
  | { refused: Refused; message?: 'refused' }
  | { update: { settings: GroupSettings | null }; message?: 'update' };

export type ConnectStream = grpc.ClientDuplexStream<HarnessMessage, RegistrarMessage>;
export type ServerConnectStream = grpc.ServerDuplexStream<HarnessMessage, RegistrarMessage>;

let service: grpc.ServiceClientConstructor | undefined;

/** The `Registration` client constructor; `.service` is the definition the registrar serves. */
export function registrationService(): grpc.ServiceClientConstructor {
  if (service) return service;
  const definition = loadSync(join(packageRoot(), PROTO_FILE), { keepCase: true, defaults: true, longs: String, enums: String, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { meshexpansion: { registration: { v1: { Registration: grpc.ServiceClientConstructor } } } };
  service = pkg.meshexpansion.registration.v1.Registration;
  return service;
}

/** The state a probe-less harness reports: the proxy decides readiness. */
export function proxyOnlyState(proxyReady: boolean, message = ''): WorkloadState {
  return proxyReady
    ? { proxy_ready: true, probes: [], reason: '', message: '' }
    : { proxy_ready: false, probes: [], reason: 'ProxyNotReady', message: message || 'the proxy is not ready' };
}
