/**
 * The linkerd2-proxy environment, rendered from the harness configuration. Pure: the same
 * configuration and context give the same variables in the same order, which the golden
 * files under test/golden/proxy/ pin.
 *
 * Names and formats follow linkerd2-proxy's own parser (linkerd/app/src/env.rs): durations
 * are an integer with a unit, listen addresses are socket addresses, the policy workload
 * and destination context are opaque JSON the control plane reads.
 */
import type { HarnessConfig } from '../config/types.ts';
import { ConfigError } from '../util/errors.ts';
import { configuredWorkloadName } from '../protocol/workload-name.ts';
import { formatDuration } from '../util/duration.ts';

/** Cluster facts a pod's proxy gets from the injector; the registrar sends them (linkerd-config). */
export interface ClusterProxySettings {
  defaultInboundPolicy: string;
  clusterNetworks: string[];
}

export interface ProxyEnvContext {
  /** ExternalWorkload name; empty: workload.name, else the derived name (configuredWorkloadName). */
  workloadName: string;
  /** The trust anchors as PEM text (the proxy takes the text, not a file). */
  trustAnchorsPem: string;
  /** From the registrar's accepted message; local proxy.* settings override them. */
  cluster?: ClusterProxySettings | undefined;
  /** Workload IPs detected on the host, used when workload.ips is empty. */
  detectedIps?: string[];
}

/** What the proxy gets before the registrar has spoken: Linkerd's own chart defaults. */
export const LINKERD_DEFAULT_PROXY_SETTINGS: ClusterProxySettings = {
  defaultInboundPolicy: 'all-unauthenticated',
  clusterNetworks: ['10.0.0.0/8', '100.64.0.0/10', '172.16.0.0/12', '192.168.0.0/16', 'fd00::/8'],
};

export const PROXY_ENV = {
  trustAnchors: 'LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS',
  serverId: 'LINKERD2_PROXY_IDENTITY_SERVER_ID',
  serverName: 'LINKERD2_PROXY_IDENTITY_SERVER_NAME',
  workloadApiAddress: 'LINKERD2_PROXY_IDENTITY_SPIRE_WORKLOAD_API_ADDRESS',
  destinationAddr: 'LINKERD2_PROXY_DESTINATION_SVC_ADDR',
  destinationName: 'LINKERD2_PROXY_DESTINATION_SVC_NAME',
  destinationContext: 'LINKERD2_PROXY_DESTINATION_CONTEXT',
  policyAddr: 'LINKERD2_PROXY_POLICY_SVC_ADDR',
  policyName: 'LINKERD2_PROXY_POLICY_SVC_NAME',
  policyWorkload: 'LINKERD2_PROXY_POLICY_WORKLOAD',
  inboundListenAddr: 'LINKERD2_PROXY_INBOUND_LISTEN_ADDR',
  inboundPorts: 'LINKERD2_PROXY_INBOUND_PORTS',
  inboundIps: 'LINKERD2_PROXY_INBOUND_IPS',
  inboundDefaultPolicy: 'LINKERD2_PROXY_INBOUND_DEFAULT_POLICY',
  clusterNetworks: 'LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS',
  outboundListenAddr: 'LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR',
  outboundListenAddrs: 'LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS',
  adminListenAddr: 'LINKERD2_PROXY_ADMIN_LISTEN_ADDR',
  controlListenAddr: 'LINKERD2_PROXY_CONTROL_LISTEN_ADDR',
  log: 'LINKERD2_PROXY_LOG',
  logFormat: 'LINKERD2_PROXY_LOG_FORMAT',
  shutdownGracePeriod: 'LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD',
} as const;

/**
 * Variables proxy.extraEnv may not set, each with the setting that controls it. Besides
 * what the harness renders, this holds the proxy's aliases that would silently win over
 * or fight with a rendered variable.
 */
const OWNED: Record<string, string> = {
  [PROXY_ENV.trustAnchors]: 'identity.trustAnchorsFile',
  [PROXY_ENV.serverId]: 'identity.spiffeId',
  [PROXY_ENV.serverName]: 'identity.serverName',
  [PROXY_ENV.workloadApiAddress]: 'identity.workloadApiSocket',
  LINKERD2_PROXY_IDENTITY_SPIRE_SOCKET: 'identity.workloadApiSocket',
  LINKERD2_PROXY_IDENTITY_LOCAL_NAME: 'identity.spiffeId and identity.serverName',
  [PROXY_ENV.destinationAddr]: 'proxy.destinationAddr',
  [PROXY_ENV.destinationName]: 'proxy.destinationName',
  [PROXY_ENV.destinationContext]: 'workload.namespace, workload.nodeName and workload.name',
  [PROXY_ENV.policyAddr]: 'proxy.policyAddr',
  [PROXY_ENV.policyName]: 'proxy.policyName',
  [PROXY_ENV.policyWorkload]: 'workload.namespace and workload.name',
  [PROXY_ENV.inboundListenAddr]: 'proxy.inboundPort',
  [PROXY_ENV.inboundPorts]: 'workload.ports',
  [PROXY_ENV.inboundIps]: 'workload.ips',
  [PROXY_ENV.inboundDefaultPolicy]: 'proxy.inboundDefaultPolicy',
  [PROXY_ENV.clusterNetworks]: 'proxy.clusterNetworks',
  [PROXY_ENV.outboundListenAddr]: 'proxy.outboundPort',
  [PROXY_ENV.outboundListenAddrs]: 'proxy.outboundPort',
  [PROXY_ENV.adminListenAddr]: 'proxy.adminPort',
  [PROXY_ENV.controlListenAddr]: 'proxy.controlPort',
  [PROXY_ENV.log]: 'proxy.logLevel',
  [PROXY_ENV.logFormat]: 'proxy.logFormat',
  [PROXY_ENV.shutdownGracePeriod]: 'proxy.shutdownGrace',
};

/** One problem per proxy.extraEnv key that would override what the harness renders. */
export function extraEnvProblems(config: HarnessConfig): string[] {
  return Object.keys(config.proxy.extraEnv)
    .filter((key) => key in OWNED)
    .sort()
    .map((key) => `proxy.extraEnv.${key}: the harness renders this variable itself; remove it and set ${OWNED[key]} instead`);
}

/** Raised by renderProxyEnv when proxy.extraEnv tries to override a rendered variable. */
export class ProxyEnvError extends ConfigError {}

/** `unix:///path` for a bare path; addresses that already carry a scheme pass through. */
export function workloadApiAddress(socket: string): string {
  if (socket.startsWith('/')) return `unix://${socket}`;
  return socket;
}

function workloadPorts(config: HarnessConfig): number[] {
  return [...new Set(config.workload.ports.map((p) => p.port))];
}

export function renderProxyEnv(config: HarnessConfig, ctx: ProxyEnvContext): Record<string, string> {
  const problems = extraEnvProblems(config);
  if (problems.length) throw new ProxyEnvError(problems);

  const { proxy, identity, workload } = config;
  // The loader's one IPv6 decision, which ip6tables follows too: when IPv6 outbound is
  // redirected, the proxy must listen where it is sent.
  const ipv6 = config.host.ipv6;
  const any = ipv6 ? '[::]' : '0.0.0.0';
  const name = ctx.workloadName || configuredWorkloadName(config);
  // Without a SPIFFE ID there is no name to derive; the key is left out rather than invented.
  const external = name ? { external_workload: name } : {};
  const ports = workloadPorts(config);
  const outbound = `127.0.0.1:${proxy.outboundPort}`;
  const ips = workload.ips.length ? workload.ips : ctx.detectedIps ?? [];
  const cluster = ctx.cluster ?? LINKERD_DEFAULT_PROXY_SETTINGS;
  const networks = proxy.clusterNetworks.length ? proxy.clusterNetworks : cluster.clusterNetworks.length ? cluster.clusterNetworks : LINKERD_DEFAULT_PROXY_SETTINGS.clusterNetworks;

  const env: Record<string, string> = {
    [PROXY_ENV.trustAnchors]: ctx.trustAnchorsPem.trim(),
    [PROXY_ENV.serverId]: identity.spiffeId,
    [PROXY_ENV.serverName]: identity.serverName,
    [PROXY_ENV.workloadApiAddress]: workloadApiAddress(identity.workloadApiSocket),
    [PROXY_ENV.destinationAddr]: proxy.destinationAddr,
    [PROXY_ENV.destinationName]: proxy.destinationName,
    [PROXY_ENV.destinationContext]: JSON.stringify({ ns: workload.namespace, nodeName: workload.nodeName, ...external }),
    [PROXY_ENV.policyAddr]: proxy.policyAddr || proxy.destinationAddr,
    [PROXY_ENV.policyName]: proxy.policyName,
    [PROXY_ENV.policyWorkload]: JSON.stringify({ ns: workload.namespace, ...external }),
    [PROXY_ENV.inboundListenAddr]: `${any}:${proxy.inboundPort}`,
    ...(ports.length ? { [PROXY_ENV.inboundPorts]: ports.join(',') } : {}),
    ...(ips.length ? { [PROXY_ENV.inboundIps]: ips.join(',') } : {}),
    [PROXY_ENV.inboundDefaultPolicy]: proxy.inboundDefaultPolicy || cluster.defaultInboundPolicy || LINKERD_DEFAULT_PROXY_SETTINGS.defaultInboundPolicy,
    [PROXY_ENV.clusterNetworks]: networks.join(','),
    // Proxies before v2.228 read only the singular name; newer ones prefer the list,
    // which also carries the IPv6 loopback listener.
    [PROXY_ENV.outboundListenAddr]: outbound,
    [PROXY_ENV.outboundListenAddrs]: ipv6 ? `${outbound},[::1]:${proxy.outboundPort}` : outbound,
    [PROXY_ENV.adminListenAddr]: `127.0.0.1:${proxy.adminPort}`,
    [PROXY_ENV.controlListenAddr]: `${any}:${proxy.controlPort}`,
    [PROXY_ENV.log]: proxy.logLevel,
    [PROXY_ENV.logFormat]: proxy.logFormat,
    [PROXY_ENV.shutdownGracePeriod]: formatDuration(Math.round(proxy.shutdownGrace)),
  };
  for (const key of Object.keys(proxy.extraEnv).sort()) env[key] = proxy.extraEnv[key]!;
  return env;
}

/** Quotes a value for a POSIX shell: single quotes, with embedded ones closed and escaped. */
function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:@,+=-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * The environment as a file a shell can source (`set -a; . ./proxy.env`), for running
 * the proxy by hand with exactly what the harness would give it, and for golden files.
 */
export function formatEnvFile(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([key, value]) => `${key}=${shellQuote(value)}\n`)
    .join('');
}
