/**
 * The harness configuration schema: one place that defines every field, its default,
 * its environment variable and its documentation. docs/configuration.md is generated
 * from this file (npm run docs), and a test fails if the two disagree.
 *
 * Environment variables are derived, never written by hand:
 * section.someKey -> MESH_HARNESS_SECTION_SOME_KEY.
 */
import { hostname } from 'node:os';
import type { FormatName } from './formats.ts';

export interface FieldSpec {
  doc: string;
  /** A format from formats.ts (which also fixes the field's TypeScript type), or the allowed strings. */
  format: FormatName | readonly string[];
  default: unknown;
  /** Shown in docs instead of the computed default (for defaults that depend on the host). */
  docDefault?: string;
  sensitive?: boolean;
}

type Section = Record<string, FieldSpec>;

export const schemaSections = {
  workload: {
    group: { doc: 'Name of the ExternalGroup this machine joins (the registrar refuses unknown groups).', format: 'k8s-name-or-empty', default: '' },
    namespace: { doc: 'Kubernetes namespace of the ExternalGroup and of the ExternalWorkload created for this machine.', format: 'k8s-name-or-empty', default: 'default' },
    nodeName: { doc: 'Name of this machine as shown in the destination context and in the ExternalWorkload.', format: 'nonempty-string', default: hostname(), docDefault: 'the host name' },
    name: { doc: 'ExternalWorkload name. Empty: derived from the namespace, group, node name and SPIFFE ID (`<group>-<node>-<hash>`, the same function the registrar uses), so the proxy never waits for the registrar. A name of its own is accepted only where the ExternalGroup sets spec.allowCustomNames, and must start with `<group>-`.', format: 'k8s-name-or-empty', default: '' },
    ips: { doc: 'Workload IPs announced to the mesh: at most one IPv4 and one IPv6. Empty: the addresses of the default route\'s interface, detected at start, are sent to the registrar and given to the proxy (LINKERD2_PROXY_INBOUND_IPS); the IPv6 decision does not count them. The registrar accepts an IP only when it is the address this machine connects from, or inside the ExternalGroup\'s spec.allowedIPs.', format: 'ip-list', default: [] },
    ports: { doc: 'Ports the workload serves: numbers or {"port", "name", "protocol"} objects. Traffic to them is redirected to the proxy inbound port.', format: 'workload-ports', default: [] },
  },
  identity: {
    spiffeId: { doc: 'SPIFFE ID this machine must hold, such as spiffe://root.linkerd.cluster.local/vm/web.', format: 'spiffe-id-or-empty', default: '' },
    serverName: { doc: 'DNS name the proxy presents for TLS (SNI); given to the proxy as LINKERD2_PROXY_IDENTITY_SERVER_NAME. Must be the ExternalGroup\'s spec.template.serverName (or, without one, a DNS name of the SVID): the registrar refuses another.', format: 'dns-name-or-empty', default: '' },
    trustAnchorsFile: { doc: 'PEM file of the mesh trust anchors (the Linkerd identity trust roots). SVID chains are verified against it.', format: 'path', default: '/etc/mesh-harness/trust-anchors.pem' },
    workloadApiSocket: { doc: 'SPIFFE Workload API socket of the SPIRE agent: unix:///path or an absolute path.', format: 'workload-api-address', default: 'unix:///run/spire/agent/api.sock' },
    expiryMargin: { doc: 'The harness is not ready when its SVID expires within this margin.', format: 'duration', default: 60_000 },
  },
  spire: {
    mode: { doc: '`external`: use a SPIRE agent someone else runs. `managed`: the harness runs spire-agent as a child.', format: ['external', 'managed'], default: 'external' },
    agentBinary: { doc: 'spire-agent executable (managed mode). A bare name is looked up on PATH.', format: 'command', default: 'spire-agent' },
    agentConfig: { doc: 'spire-agent configuration file (managed mode). Empty: rendered from the fields below.', format: 'optional-path', default: '' },
    serverAddress: { doc: 'SPIRE server host name or IP (managed mode, rendered config).', format: 'optional-string', default: '' },
    serverPort: { doc: 'SPIRE server port (managed mode, rendered config).', format: 'port-number', default: 8081 },
    trustDomain: { doc: 'SPIRE trust domain (managed mode, rendered config).', format: 'nonempty-string', default: 'root.linkerd.cluster.local' },
    trustBundleFile: { doc: 'Bootstrap trust bundle of the SPIRE server (managed mode, rendered config).', format: 'optional-path', default: '' },
    joinTokenFile: { doc: 'File holding a join token for node attestation (managed mode). Must not be readable by group or others.', format: 'optional-path', default: '' },
    dataDir: { doc: 'spire-agent data directory (managed mode).', format: 'path', default: '/var/lib/mesh-harness/spire-agent' },
    logLevel: { doc: 'spire-agent log level (managed mode).', format: ['debug', 'info', 'warn', 'error'], default: 'info' },
  },
  proxy: {
    binary: { doc: 'linkerd2-proxy executable. A bare name is looked up on PATH.', format: 'command', default: '/usr/lib/linkerd/linkerd2-proxy' },
    user: { doc: 'User the proxy runs as; its traffic is never redirected.', format: 'account-name', default: 'meshproxy' },
    group: { doc: 'Group the proxy and the harness run with; its traffic is never redirected, and a SPIRE entry with selector unix:gid:<gid> identifies both.', format: 'account-name', default: 'meshproxy' },
    inboundPort: { doc: 'Proxy inbound listener port (LINKERD2_PROXY_INBOUND_LISTEN_ADDR).', format: 'port-number', default: 4143 },
    outboundPort: { doc: 'Proxy outbound listener port (LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR).', format: 'port-number', default: 4140 },
    adminPort: { doc: 'Proxy admin port (LINKERD2_PROXY_ADMIN_LISTEN_ADDR, on 127.0.0.1).', format: 'port-number', default: 4191 },
    controlPort: { doc: 'Proxy control listener port (LINKERD2_PROXY_CONTROL_LISTEN_ADDR).', format: 'port-number', default: 4190 },
    destinationAddr: { doc: 'Linkerd destination service address, host:port.', format: 'host-port-or-empty', default: '' },
    destinationName: { doc: 'Identity of the destination service.', format: 'nonempty-string', default: 'linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local' },
    policyAddr: { doc: 'Linkerd policy service address, host:port. Empty: same as destinationAddr.', format: 'host-port-or-empty', default: '' },
    policyName: { doc: 'Identity of the policy service.', format: 'nonempty-string', default: 'linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local' },
    logLevel: { doc: 'LINKERD2_PROXY_LOG.', format: 'nonempty-string', default: 'warn,linkerd=info' },
    logFormat: { doc: 'LINKERD2_PROXY_LOG_FORMAT.', format: ['plain', 'json'], default: 'json' },
    shutdownGrace: { doc: 'How long the proxy may drain after SIGTERM before it is killed (LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD).', format: 'duration', default: 30_000 },
    inboundDefaultPolicy: { doc: 'LINKERD2_PROXY_INBOUND_DEFAULT_POLICY. Empty: what the registrar sends (the cluster\'s linkerd-config defaultInboundPolicy), all-unauthenticated until it has.', format: ['', 'all-unauthenticated', 'all-authenticated', 'cluster-unauthenticated', 'cluster-authenticated', 'deny', 'audit'], default: '' },
    clusterNetworks: { doc: 'LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS. Empty: what the registrar sends (linkerd-config clusterNetworks), Linkerd\'s default networks until it has.', format: 'cidr-list', default: [] },
    extraEnv: { doc: 'Additional environment for the proxy. Variables the harness renders itself cannot be overridden here.', format: 'env-map', default: {} },
  },
  iptables: {
    enabled: { doc: 'Whether the harness installs and keeps the traffic redirection rules.', format: 'bool', default: true },
    backend: { doc: 'iptables backend: `auto` detects whether the host uses nft or legacy.', format: ['auto', 'nft', 'legacy'], default: 'auto' },
    ipv6: { doc: 'Manage ip6tables too: `auto` when the kernel has IPv6.', format: ['auto', 'on', 'off'], default: 'auto' },
    portsToRedirect: { doc: 'Inbound ports to redirect. Empty: all TCP ports except the ignored ones.', format: 'port-spec-list', default: [] },
    ignoreInboundPorts: { doc: 'Inbound ports or ranges never redirected, in addition to the always exempt ones: SSH (22 and the ports in sshd_config, see redirectSsh) and the proxy\'s inbound, admin and control ports.', format: 'port-spec-list', default: [] },
    redirectSsh: { doc: 'Send inbound SSH (port 22 and the ports in sshd_config) through the proxy too. Off by default so a proxy that is down never locks the operator out; set it only with another way into the machine.', format: 'bool', default: false },
    ignoreOutboundPorts: { doc: 'Outbound destination ports or ranges never redirected.', format: 'port-spec-list', default: [] },
    ignoreInboundSubnets: { doc: 'Source subnets whose inbound connections are never redirected.', format: 'cidr-list', default: [] },
    ignoreOutboundSubnets: { doc: 'Destination subnets never redirected outbound (for example 169.254.169.254/32, the cloud metadata service).', format: 'cidr-list', default: [] },
    onStop: { doc: '`keep` leaves the rules when the harness stops, for the next start: traffic is refused rather than bypassing the mesh until then. Rules without a running proxy cut the machine off, so the unit\'s ExecStopPost removes them unless the stop was clean and a restart follows (systemctl restart, a package upgrade). `clean` removes them on every stop.', format: ['keep', 'clean'], default: 'keep' },
    resyncInterval: { doc: 'Full re-check of the rules even without a netfilter event.', format: 'duration', default: 30_000 },
  },
  control: {
    registrarAddress: { doc: 'mesh-registrar address, host:port. Empty: no registration (the workload must be registered by hand).', format: 'host-port-or-empty', default: '' },
    registrarIdentity: { doc: 'SPIFFE ID the registrar must present.', format: 'spiffe-id-or-empty', default: '' },
    heartbeatInterval: { doc: 'Heartbeat interval until the registrar sends its own.', format: 'duration', default: 10_000 },
  },
  probes: {
    workload: { doc: 'Local workload probes with Kubernetes probe fields (httpGet, tcpSocket, grpc, exec, periodSeconds, ...); all must pass. The ExternalGroup may add more (see docs/probes.md).', format: 'probe-list', default: [] },
    allowClusterExec: { doc: 'Run exec probes that come from the ExternalGroup. Off: they are refused and the workload is not ready (whoever edits the group would otherwise run commands on this VM).', format: 'bool', default: false },
    allowClusterHosts: { doc: 'Addresses beyond loopback and the workload\'s own IPs that httpGet, tcpSocket and grpc probes from the ExternalGroup may connect to, as CIDRs (such as 10.0.5.0/24, or 169.254.169.254/32 for a metadata service). Empty: only loopback and the workload\'s IPs; probes from the cluster aiming elsewhere, or naming a host name, are refused and the workload is not ready (whoever edits the group would otherwise probe this VM\'s network from inside).', format: 'cidr-list', default: [] },
    execUser: { doc: 'Unprivileged account that exec probes and the probe runner (the process making httpGet, tcpSocket and grpc checks) run as, with a clean environment, so probe traffic goes through the mesh like any local client\'s. Never root, and never the proxy user or group (their traffic bypasses the mesh and they can fetch the SVID).', format: 'account-name', default: 'nobody' },
  },
  admin: {
    address: { doc: 'Admin server listen address: an IPv4 or IPv6 address (a loopback one unless admin.allowNonLoopback is true).', format: 'ip-address', default: '127.0.0.1' },
    port: { doc: 'Admin server port.', format: 'port-number', default: 4192 },
    allowNonLoopback: { doc: 'Allow the admin server on a non-loopback address (it has no authentication).', format: 'bool', default: false },
  },
  log: {
    level: { doc: 'Harness log level.', format: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], default: 'info' },
    format: { doc: '`auto`: human-readable on a terminal, JSON otherwise (journald).', format: ['auto', 'json', 'pretty'], default: 'auto' },
  },
} as const satisfies Record<string, Section>;

export type SectionName = keyof typeof schemaSections;

/** section.someKey -> MESH_HARNESS_SECTION_SOME_KEY */
export function envVarFor(path: string): string {
  return `MESH_HARNESS_${path.split('.').map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;
}

/** Every field as [path, spec], in schema order. */
export function schemaFields(): Array<[string, FieldSpec]> {
  const fields: Array<[string, FieldSpec]> = [];
  for (const [section, entries] of Object.entries(schemaSections)) {
    for (const [key, spec] of Object.entries(entries as Section)) fields.push([`${section}.${key}`, spec]);
  }
  return fields;
}

/** MESH_HARNESS_* variables that are not configuration fields (so not warned about). */
export const nonConfigEnv: ReadonlySet<string> = new Set(['MESH_HARNESS_DEBUG']);

/** Fields the daemon cannot run without; other commands (iptables, check) need fewer. */
export const requiredForRun = ['identity.spiffeId', 'identity.serverName', 'proxy.destinationAddr'] as const;
