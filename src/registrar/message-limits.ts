/**
 * How large what a harness sends may be. Every field of a hello has a bound, checked before
 * anything is looked up or written: a field beyond it is refused as InvalidHello naming the
 * field, since a value the API server cannot store (a 3 MiB annotation) would otherwise be
 * retried forever. State changes are the harness's report of its workload: their texts are
 * cut to size (a long probe output must not cost the machine its registration), but more
 * probe results than any group can have is refused.
 *
 * The gRPC layer bounds the message as a whole (limits.maxMessageBytes) before this runs.
 */
import { isIP } from 'node:net';
import type { Hello, ProbeResult, WorkloadState } from '../protocol/registration.ts';
import { isDnsLabel } from '../protocol/workload-name.ts';

export const HELLO_LIMITS = {
  /** A Kubernetes node name is a DNS subdomain: at most 253 characters. */
  nodeName: 253,
  /** The harness sends 32 hex digits (a hash of /etc/machine-id). */
  machineId: 64,
  /** Each of versions.harness, .proxy, .spire_agent. */
  version: 64,
  /** A DNS name. */
  serverName: 253,
  /** One IPv4 and one IPv6 address, as an ExternalWorkload holds. */
  workloadIps: 2,
  /** ExternalWorkload spec.meshTLS.identity holds at most 253 characters. */
  spiffeId: 253,
} as const;

export const STATE_LIMITS = {
  /** An ExternalGroup has at most 16 probes; refused cluster probes are reported as results too. */
  probes: 64,
  probeName: 128,
  probeMessage: 1024,
  reason: 64,
  message: 4096,
} as const;

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;
// Control characters would end up in annotations and log lines.
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Whether a value is a lowercase DNS name (RFC 1123), as a server name must be. */
export function isDnsName(value: string): boolean {
  return DNS_NAME.test(value);
}

/** Everything wrong with a hello, one line per field naming it and the harness setting behind it; empty when it is fine. */
export function helloProblems(hello: Hello): string[] {
  const problems: string[] = [];
  const text = (field: string, value: string, max: number, setting: string) => {
    if (value.length > max) problems.push(`${field} is ${value.length} characters long, more than ${max}${setting ? ` (${setting})` : ''}`);
    else if (CONTROL.test(value)) problems.push(`${field} holds control characters${setting ? ` (${setting})` : ''}`);
  };
  const label = (field: string, value: string, setting: string) => {
    if (!value) problems.push(`${field} is empty (set ${setting})`);
    else if (!isDnsLabel(value)) problems.push(`${field} ${quote(value)} is not a DNS-1123 label of at most 63 characters (${setting})`);
  };
  label('group', hello.group, 'workload.group');
  label('namespace', hello.namespace, 'workload.namespace');
  if (!hello.node_name) problems.push('node_name is empty (set workload.nodeName)');
  else text('node_name', hello.node_name, HELLO_LIMITS.nodeName, 'workload.nodeName');
  if (hello.workload_name && !isDnsLabel(hello.workload_name)) problems.push(`workload_name ${quote(hello.workload_name)} is not a DNS-1123 label of at most 63 characters (workload.name)`);
  if (hello.server_name && !isDnsName(hello.server_name)) problems.push(`server_name ${quote(hello.server_name)} is not a lowercase DNS name of at most 253 characters (identity.serverName)`);
  text('machine_id', hello.machine_id, HELLO_LIMITS.machineId, '');
  if (hello.proxy_inbound_port > 65535) problems.push(`proxy_inbound_port ${hello.proxy_inbound_port} is not a port (1-65535; proxy.inboundPort)`);
  for (const key of ['harness', 'proxy', 'spire_agent'] as const) text(`versions.${key}`, hello.versions?.[key] ?? '', HELLO_LIMITS.version, '');
  const ips = hello.workload_ips ?? [];
  if (ips.length > HELLO_LIMITS.workloadIps) problems.push(`workload_ips has ${ips.length} addresses, at most ${HELLO_LIMITS.workloadIps} (one IPv4, one IPv6) are allowed (workload.ips)`);
  else {
    for (const ip of ips) if (!isIP(ip)) problems.push(`workload_ips: ${quote(ip)} is not an IP address (workload.ips)`);
    const families = ips.map((ip) => isIP(ip)).filter(Boolean);
    if (new Set(families).size < families.length) problems.push(`workload_ips ${JSON.stringify(ips)} holds two addresses of one family; at most one IPv4 and one IPv6 (workload.ips)`);
  }
  if ((hello.state?.probes?.length ?? 0) > STATE_LIMITS.probes) problems.push(`state has ${hello.state!.probes.length} probe results, at most ${STATE_LIMITS.probes}`);
  return problems;
}

/** Why a state change cannot be taken, or undefined when it can. */
export function stateProblem(state: WorkloadState | null | undefined): string | undefined {
  const count = state?.probes?.length ?? 0;
  return count > STATE_LIMITS.probes ? `a state change with ${count} probe results, at most ${STATE_LIMITS.probes}` : undefined;
}

/** The state with every text cut to its limit (what lands in the Ready condition). */
export function boundedState(state: WorkloadState | null | undefined): WorkloadState {
  return {
    proxy_ready: state?.proxy_ready ?? false,
    probes: (state?.probes ?? []).map((p: ProbeResult) => ({ ...p, name: cut(p.name ?? '', STATE_LIMITS.probeName), message: cut(p.message ?? '', STATE_LIMITS.probeMessage) })),
    reason: cut(state?.reason ?? '', STATE_LIMITS.reason),
    message: cut(state?.message ?? '', STATE_LIMITS.message),
  };
}

function cut(value: string, max: number): string {
  return value.length <= max ? value : `${value.slice(0, max - 1)}…`;
}

/** A value for a refusal message: quoted, and shortened when it is long (the refusal must stay small too). */
export function quote(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
}
