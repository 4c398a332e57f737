/**
 * mesh-registrar configuration: a small JSON file, validated and parsed once. Every
 * problem is reported with its field path, the bad value and what is allowed; unknown
 * keys are errors, as in the harness configuration.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { parseDuration } from '../util/duration.ts';

export interface RegistrarConfig {
  /** gRPC listen address, host:port. */
  listen: string;
  /** /healthz, /readyz and /metrics, host:port. */
  adminListen: string;
  /** Serving certificate chain and key (PEM), reloaded when the files change. */
  certFile: string;
  keyFile: string;
  /** Trust anchors harness certificates must chain to (PEM). */
  caFile: string;
  /** Only SPIFFE IDs of this trust domain are accepted. */
  trustDomain: string;
  /** This replica's name: its Lease name and the holder annotation on the workloads it serves. */
  replica: string;
  /** Namespace of the replicas' Leases. */
  namespace: string;
  /** A dropped stream keeps the workload Ready this long (a reconnect to any replica in time is invisible). */
  grace: number;
  /** A workload whose harness stayed away this long is deleted. */
  ttl: number;
  heartbeatInterval: number;
  /** Each replica's Lease duration; renewed at a third of it. */
  leaseDuration: number;
  /** Deletes per second at most (storm guard). */
  deleteRate: number;
  /** GC pauses when more than this fraction of the workloads look orphaned at once (with at least 10 workloads). */
  gcPauseFraction: number;
  /** A disconnect storm: more than this fraction of the workloads (of at least 10) lost their stream within the last grace + hold. */
  stormFraction: number;
  /** During a disconnect storm, Ready=False (Disconnected) waits up to this long beyond the grace for the reconnect. */
  stormHold: number;
  store: { kind: 'kube' | 'embedded'; kubeconfig: string; crdFiles: string[] };
  /** What one machine (one connection, one SPIFFE ID) may cost the registrar. */
  limits: RegistrarLimits;
  /** Cluster facts given to every proxy (linkerd-config defaultInboundPolicy and clusterNetworks). */
  proxy: { defaultInboundPolicy: string; clusterNetworks: string[] };
}

export interface RegistrarLimits {
  /** HTTP/2 streams one connection may have open at once (grpc.max_concurrent_streams); a harness needs one. */
  streamsPerConnection: number;
  /**
   * Streams of one SPIFFE ID on this replica that have not been answered yet. Registered
   * streams need no cap of their own: each holds a workload, and an ExternalGroup admits at
   * most spec.maxWorkloadsPerIdentity of them per identity.
   */
  pendingStreamsPerIdentity: number;
  /** The largest message the registrar reads (grpc.max_receive_message_length); a hello is well under 1 KiB. */
  maxMessageBytes: number;
  /**
   * Writes (spec and status together) per ExternalWorkload: writeBurst at once, then one per
   * writeInterval (ms). Faster changes are coalesced; the latest state is what gets written.
   */
  writeInterval: number;
  writeBurst: number;
}

export class RegistrarConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** Linkerd's own defaults for the two cluster facts (values.yaml of the control plane chart). */
const LINKERD_DEFAULT_CLUSTER_NETWORKS = ['10.0.0.0/8', '100.64.0.0/10', '172.16.0.0/12', '192.168.0.0/16', 'fd00::/8'];
export const INBOUND_POLICIES = ['all-unauthenticated', 'all-authenticated', 'cluster-unauthenticated', 'cluster-authenticated', 'deny', 'audit'];

export const REGISTRAR_DEFAULTS = {
  listen: '0.0.0.0:8443',
  adminListen: '0.0.0.0:9990',
  certFile: '/var/run/mesh-registrar/tls/tls.crt',
  keyFile: '/var/run/mesh-registrar/tls/tls.key',
  caFile: '/var/run/mesh-registrar/tls/ca.crt',
  trustDomain: 'root.linkerd.cluster.local',
  replica: process.env.POD_NAME || hostname(),
  namespace: process.env.POD_NAMESPACE || 'mesh-expansion',
  grace: '10s',
  ttl: '5m',
  heartbeatInterval: '10s',
  leaseDuration: '15s',
  deleteRate: 10,
  gcPauseFraction: 0.5,
  stormFraction: 0.2,
  stormHold: '1m',
  store: { kind: 'kube', kubeconfig: '', crdFiles: [] as string[] },
  limits: { streamsPerConnection: 8, pendingStreamsPerIdentity: 100, maxMessageBytes: 65_536, writeInterval: '1s' as string | number, writeBurst: 3 },
  proxy: { defaultInboundPolicy: 'all-unauthenticated', clusterNetworks: LINKERD_DEFAULT_CLUSTER_NETWORKS },
};

const KEYS = new Set(Object.keys(REGISTRAR_DEFAULTS));

export function loadRegistrarConfig(path: string | undefined): RegistrarConfig {
  let raw: Record<string, unknown> = {};
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new RegistrarConfigError([`${path}: cannot read the configuration file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new RegistrarConfigError([`${path}: not valid JSON: ${(err as Error).message}`]);
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new RegistrarConfigError([`${path}: must hold a JSON object`]);
  }
  return parseRegistrarConfig(raw);
}

export function parseRegistrarConfig(raw: Record<string, unknown>): RegistrarConfig {
  const problems: string[] = [];
  for (const key of Object.keys(raw)) if (!KEYS.has(key)) problems.push(`${key}: unknown key (allowed: ${[...KEYS].join(', ')})`);
  const merged = { ...REGISTRAR_DEFAULTS, ...raw } as Record<string, unknown>;
  const str = (key: string): string => {
    const v = merged[key];
    if (typeof v !== 'string' || v === '') problems.push(`${key}: ${JSON.stringify(v)} must be a non-empty string`);
    return String(v);
  };
  const hostPort = (key: string): string => {
    const v = str(key);
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(v);
    if (!m || Number(m[2]) > 65535) problems.push(`${key}: "${v}" must be host:port (use port 0 for any free port)`);
    return v;
  };
  const duration = (key: string): number => {
    const ms = parseDuration(merged[key]);
    if (ms === undefined || ms <= 0) problems.push(`${key}: ${JSON.stringify(merged[key])} must be a positive duration such as "10s" or "5m"`);
    return ms ?? 0;
  };
  const number = (key: string, min: number, max: number): number => {
    const v = merged[key];
    if (typeof v !== 'number' || !(v >= min && v <= max)) problems.push(`${key}: ${JSON.stringify(v)} must be a number from ${min} to ${max}`);
    return Number(v);
  };

  const config: RegistrarConfig = {
    listen: hostPort('listen'),
    adminListen: hostPort('adminListen'),
    certFile: str('certFile'),
    keyFile: str('keyFile'),
    caFile: str('caFile'),
    trustDomain: str('trustDomain'),
    replica: str('replica'),
    namespace: str('namespace'),
    grace: duration('grace'),
    ttl: duration('ttl'),
    heartbeatInterval: duration('heartbeatInterval'),
    leaseDuration: duration('leaseDuration'),
    deleteRate: number('deleteRate', 0.01, 10_000),
    gcPauseFraction: number('gcPauseFraction', 0.01, 1),
    stormFraction: number('stormFraction', 0.01, 1),
    stormHold: duration('stormHold'),
    store: { ...REGISTRAR_DEFAULTS.store } as RegistrarConfig['store'],
    limits: { streamsPerConnection: 0, pendingStreamsPerIdentity: 0, maxMessageBytes: 0, writeInterval: 0, writeBurst: 0 },
    proxy: { ...REGISTRAR_DEFAULTS.proxy },
  };
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(config.replica) || config.replica.length > 63) {
    problems.push(`replica: "${config.replica}" must be a DNS-1123 label (it names the replica's Lease)`);
  }
  if (config.ttl && config.grace && config.ttl <= config.grace) problems.push(`ttl: must be longer than grace (${merged['ttl']} <= ${merged['grace']})`);

  const store = merged['store'];
  if (store === null || typeof store !== 'object' || Array.isArray(store)) problems.push('store: must be an object {kind, kubeconfig, crdFiles}');
  else {
    const s = { ...REGISTRAR_DEFAULTS.store, ...(store as Record<string, unknown>) } as Record<string, unknown>;
    for (const key of Object.keys(store)) if (!(key in REGISTRAR_DEFAULTS.store)) problems.push(`store.${key}: unknown key (allowed: kind, kubeconfig, crdFiles)`);
    if (s['kind'] !== 'kube' && s['kind'] !== 'embedded') problems.push(`store.kind: ${JSON.stringify(s['kind'])} must be "kube" or "embedded"`);
    if (typeof s['kubeconfig'] !== 'string') problems.push('store.kubeconfig: must be a path, or "" for the in-cluster configuration');
    if (!Array.isArray(s['crdFiles']) || !s['crdFiles'].every((f) => typeof f === 'string')) problems.push('store.crdFiles: must be a list of CRD YAML paths (embedded store)');
    else if (s['kind'] === 'embedded' && s['crdFiles'].length === 0) problems.push('store.crdFiles: the embedded store needs the ExternalWorkload and ExternalGroup CRD files');
    config.store = s as RegistrarConfig['store'];
  }

  const limits = merged['limits'];
  if (limits === null || typeof limits !== 'object' || Array.isArray(limits)) problems.push(`limits: must be an object {${Object.keys(REGISTRAR_DEFAULTS.limits).join(', ')}}`);
  else {
    const l = { ...REGISTRAR_DEFAULTS.limits, ...(limits as Record<string, unknown>) } as Record<string, unknown>;
    for (const key of Object.keys(limits)) if (!(key in REGISTRAR_DEFAULTS.limits)) problems.push(`limits.${key}: unknown key (allowed: ${Object.keys(REGISTRAR_DEFAULTS.limits).join(', ')})`);
    const integer = (key: keyof RegistrarLimits, min: number, max: number): number => {
      const v = l[key];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) problems.push(`limits.${key}: ${JSON.stringify(v)} must be a whole number from ${min} to ${max}`);
      return Number(v);
    };
    const interval = parseDuration(l['writeInterval']);
    if (interval === undefined || interval < 0 || interval > 60_000) problems.push(`limits.writeInterval: ${JSON.stringify(l['writeInterval'])} must be a duration from "0s" to "1m" such as "1s"`);
    config.limits = {
      streamsPerConnection: integer('streamsPerConnection', 1, 1000),
      pendingStreamsPerIdentity: integer('pendingStreamsPerIdentity', 1, 1_000_000),
      // Below 4 KiB a legitimate hello or state change with a few probe results may not fit.
      maxMessageBytes: integer('maxMessageBytes', 4096, 4 * 1024 * 1024),
      writeInterval: interval ?? 0,
      // A few at once, so that a real transition right after another (ready, a proxy crash, ready again) is written at once.
      writeBurst: integer('writeBurst', 1, 100),
    };
  }

  const proxy = merged['proxy'];
  if (proxy === null || typeof proxy !== 'object' || Array.isArray(proxy)) problems.push('proxy: must be an object {defaultInboundPolicy, clusterNetworks}');
  else {
    const p = { ...REGISTRAR_DEFAULTS.proxy, ...(proxy as Record<string, unknown>) } as Record<string, unknown>;
    for (const key of Object.keys(proxy)) if (!(key in REGISTRAR_DEFAULTS.proxy)) problems.push(`proxy.${key}: unknown key (allowed: defaultInboundPolicy, clusterNetworks)`);
    if (typeof p['defaultInboundPolicy'] !== 'string' || !INBOUND_POLICIES.includes(p['defaultInboundPolicy'])) {
      problems.push(`proxy.defaultInboundPolicy: ${JSON.stringify(p['defaultInboundPolicy'])} must be one of ${INBOUND_POLICIES.join(', ')}`);
    }
    const networks = p['clusterNetworks'];
    if (!Array.isArray(networks) || !networks.every((n) => typeof n === 'string' && isCidr(n))) {
      problems.push(`proxy.clusterNetworks: ${JSON.stringify(networks)} must be a list of CIDRs such as "10.0.0.0/8"`);
    }
    config.proxy = p as RegistrarConfig['proxy'];
  }
  if (problems.length) throw new RegistrarConfigError(problems);
  return config;
}

function isCidr(value: string): boolean {
  const [ip, bits, ...rest] = value.split('/');
  const family = isIP(ip ?? '');
  if (rest.length || !family || bits === undefined || !/^\d+$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}
