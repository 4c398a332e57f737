/**
 * What an ExternalWorkload should look like, as pure functions of the group (the
 * template), the registration (what the harness said and what TLS proved) and the
 * workload's liveness. The controller compares the result with the store's cache and
 * writes only the difference.
 */
import { isIP } from 'node:net';
import type { WorkloadState } from '../protocol/registration.ts';
import type { Condition, ExternalGroup, ExternalWorkload, WorkloadPort } from './store.ts';

/** Annotations and labels the registrar owns on every ExternalWorkload it manages. */
export const ANNOTATION = {
  /** The replica holding the harness's stream; written only when ownership changes. */
  holder: 'meshexpansion.dev/registrar-replica',
  nodeName: 'meshexpansion.dev/node-name',
  machineId: 'meshexpansion.dev/machine-id',
  /**
   * The label and annotation keys the registrar copied from the group's template, as JSON
   * {"labels":[...],"annotations":[...]}: a key that leaves the template is removed from the
   * workload only when it is listed here, so keys others set are never touched.
   */
  templateKeys: 'meshexpansion.dev/template-keys',
} as const;

export const LABEL = { group: 'meshexpansion.dev/group' } as const;

/** What the registrar knows of one machine, keyed by identity + node (never by IP). */
export interface Registration {
  namespace: string;
  name: string;
  group: string;
  spiffeId: string;
  nodeName: string;
  machineId: string;
  serverName: string;
  workloadIps: string[];
  /** The proxy's inbound port as the hello says it (1-65535), 0 when not said. */
  proxyInboundPort: number;
}

/** The port name a pod's proxy container gives its inbound port; Linkerd's opaque transport looks for it. */
export const PROXY_PORT_NAME = 'linkerd-proxy';

export type ReadyReason = 'Ready' | 'ProxyNotReady' | 'ProbeFailed' | 'Disconnected' | 'Draining';

export interface Readiness {
  ready: boolean;
  reason: ReadyReason | string;
  message: string;
}

/** The key a workload is tracked by: identity and node, never IP (an IP is data). */
export function registrationKey(spiffeId: string, nodeName: string): string {
  return `${spiffeId}\n${nodeName}`;
}

/** At most one IPv4 and one IPv6 address, the first of each, as the CRD allows. */
export function workloadIps(ips: string[]): Array<{ ip: string }> {
  const v4 = ips.find((ip) => isIP(ip) === 4);
  const v6 = ips.find((ip) => isIP(ip) === 6);
  return [v4, v6].filter((ip): ip is string => Boolean(ip)).map((ip) => ({ ip }));
}

/** Whether a SPIFFE ID is allowed by a group's allowedIdentities (exact, or a prefix ending in /*). */
export function identityAllowed(group: ExternalGroup, spiffeId: string): boolean {
  return (group.spec.allowedIdentities ?? []).some((pattern) =>
    pattern.endsWith('/*') ? spiffeId.startsWith(pattern.slice(0, -1)) && spiffeId.length > pattern.length - 1 : pattern === spiffeId,
  );
}

function normalizedPorts(ports: WorkloadPort[] | undefined): WorkloadPort[] {
  return (ports ?? []).map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port, protocol: p.protocol ?? 'TCP' }));
}

/** The template keys an ExternalWorkload's annotation says the registrar set (none when absent or unreadable). */
export function ownedTemplateKeys(workload: ExternalWorkload): { labels: string[]; annotations: string[] } {
  const text = workload.metadata.annotations?.[ANNOTATION.templateKeys];
  try {
    const parsed = text ? (JSON.parse(text) as { labels?: unknown; annotations?: unknown }) : {};
    const strings = (value: unknown) => (Array.isArray(value) ? value.filter((k): k is string => typeof k === 'string') : []);
    return { labels: strings(parsed.labels), annotations: strings(parsed.annotations) };
  } catch {
    // Someone edited it by hand: own nothing rather than remove what might be theirs.
    return { labels: [], annotations: [] };
  }
}

/**
 * The template's ports, then linkerd-proxy at the machine's inbound port. The machine says
 * where its proxy listens, so a template port of that name is dropped (the group's status
 * says so) rather than listed twice, which the API server would refuse.
 */
function workloadPorts(ports: WorkloadPort[] | undefined, proxyInboundPort: number): WorkloadPort[] {
  const template = normalizedPorts(ports);
  if (!proxyInboundPort) return template;
  return [...template.filter((p) => p.name !== PROXY_PORT_NAME), { name: PROXY_PORT_NAME, port: proxyInboundPort, protocol: 'TCP' }];
}

/** The ExternalWorkload's metadata and spec (status is separate: it goes through its subresource). */
export function desiredWorkload(group: ExternalGroup, registration: Registration, holder: string): ExternalWorkload {
  const template = group.spec.template ?? {};
  const owned = JSON.stringify({
    labels: Object.keys(template.metadata?.labels ?? {}).sort(),
    annotations: Object.keys(template.metadata?.annotations ?? {}).sort(),
  });
  return {
    apiVersion: 'workload.linkerd.io/v1beta1',
    kind: 'ExternalWorkload',
    metadata: {
      name: registration.name,
      namespace: registration.namespace,
      labels: { ...template.metadata?.labels, [LABEL.group]: group.metadata.name },
      annotations: {
        ...template.metadata?.annotations,
        [ANNOTATION.holder]: holder,
        [ANNOTATION.templateKeys]: owned,
        [ANNOTATION.nodeName]: registration.nodeName,
        ...(registration.machineId ? { [ANNOTATION.machineId]: registration.machineId } : {}),
      },
      ownerReferences: [{ apiVersion: group.apiVersion, kind: group.kind, name: group.metadata.name, uid: group.metadata.uid ?? '', controller: true, blockOwnerDeletion: false }],
    },
    spec: {
      meshTLS: { identity: registration.spiffeId, serverName: registration.serverName },
      ports: workloadPorts(template.ports, registration.proxyInboundPort),
      workloadIPs: workloadIps(registration.workloadIps),
    },
  };
}

/** Keys the registrar set from an earlier template that the desired object no longer has. */
function dropped(current: ExternalWorkload, desired: ExternalWorkload): { labels: string[]; annotations: string[] } {
  const owned = ownedTemplateKeys(current);
  return {
    labels: owned.labels.filter((k) => !(k in (desired.metadata.labels ?? {}))),
    annotations: owned.annotations.filter((k) => !(k in (desired.metadata.annotations ?? {}))),
  };
}

/**
 * Whether the stored object already matches the desired one. Labels and annotations are
 * compared on the keys the registrar sets (and those it set before and must remove), so
 * other controllers' additions do not cause a write war.
 */
export function workloadMatches(current: ExternalWorkload, desired: ExternalWorkload): boolean {
  const subset = (want: Record<string, string> | undefined, have: Record<string, string> | undefined) =>
    Object.entries(want ?? {}).every(([k, v]) => have?.[k] === v);
  const owners = (w: ExternalWorkload) => JSON.stringify((w.metadata.ownerReferences ?? []).map((o) => [o.kind, o.name, o.uid]));
  const gone = dropped(current, desired);
  return (
    subset(desired.metadata.labels, current.metadata.labels) &&
    subset(desired.metadata.annotations, current.metadata.annotations) &&
    !gone.labels.some((k) => k in (current.metadata.labels ?? {})) &&
    !gone.annotations.some((k) => k in (current.metadata.annotations ?? {})) &&
    owners(current) === owners(desired) &&
    current.spec.meshTLS.identity === desired.spec.meshTLS.identity &&
    current.spec.meshTLS.serverName === desired.spec.meshTLS.serverName &&
    JSON.stringify(normalizedPorts(current.spec.ports)) === JSON.stringify(desired.spec.ports ?? []) &&
    JSON.stringify(current.spec.workloadIPs ?? []) === JSON.stringify(desired.spec.workloadIPs ?? [])
  );
}

/**
 * The object to send as an update: the desired fields over the current object, keeping
 * others' additions and removing the template keys the registrar set that the template
 * no longer has.
 */
export function mergeForUpdate(current: ExternalWorkload, desired: ExternalWorkload): ExternalWorkload {
  const gone = dropped(current, desired);
  const without = (from: Record<string, string> | undefined, keys: string[]) =>
    Object.fromEntries(Object.entries(from ?? {}).filter(([k]) => !keys.includes(k)));
  return {
    ...current,
    metadata: {
      ...current.metadata,
      labels: { ...without(current.metadata.labels, gone.labels), ...desired.metadata.labels },
      annotations: { ...without(current.metadata.annotations, gone.annotations), ...desired.metadata.annotations },
      ownerReferences: desired.metadata.ownerReferences!,
    },
    spec: desired.spec,
  };
}

export function readyCondition(workload: ExternalWorkload | undefined): Condition | undefined {
  return workload?.status?.conditions?.find((c) => c.type === 'Ready');
}

/**
 * The status to write, or undefined when the stored Ready condition already says the
 * same. lastTransitionTime moves only when the status flips.
 */
export function statusUpdate(current: ExternalWorkload, readiness: Readiness, now: Date): ExternalWorkload | undefined {
  const existing = readyCondition(current);
  const status = readiness.ready ? 'True' : 'False';
  const message = readiness.message.slice(0, 32_768);
  if (existing && existing.status === status && existing.reason === readiness.reason && (existing.message ?? '') === message) return undefined;
  const condition: Condition = {
    type: 'Ready',
    status,
    reason: readiness.reason,
    message,
    lastTransitionTime: existing && existing.status === status && existing.lastTransitionTime ? existing.lastTransitionTime : now.toISOString().replace(/\.\d+Z$/, 'Z'),
  };
  const others = (current.status?.conditions ?? []).filter((c) => c.type !== 'Ready');
  return { ...current, status: { ...current.status, conditions: [...others, condition] } };
}

/** Readiness as a connected harness reports it: the proxy first, then the group's probes. */
export function reportedReadiness(state: WorkloadState | null | undefined): Readiness {
  if (!state || !state.proxy_ready) {
    return { ready: false, reason: 'ProxyNotReady', message: state?.message || 'the proxy is not ready' };
  }
  const failed = (state.probes ?? []).filter((p) => !p.success);
  if (failed.length) {
    return { ready: false, reason: 'ProbeFailed', message: state.message || failed.map((p) => `probe ${p.name} failed${p.message ? `: ${p.message}` : ''}`).join('; ') };
  }
  return { ready: true, reason: 'Ready', message: state.message || 'the harness reports the proxy ready' };
}

/**
 * The group's probes as the harness gets them: a named httpGet or tcpSocket port that a
 * template port carries is sent as that port's number, since the template's ports are what
 * the ExternalWorkload lists. A name no template port carries is left for the harness to
 * resolve from its own workload.ports (or to report as not found).
 */
export function resolvedProbes(group: ExternalGroup): Array<Record<string, unknown>> {
  const byName = new Map((group.spec.template?.ports ?? []).filter((p) => p.name).map((p) => [p.name!, p.port]));
  return (group.spec.probes ?? []).map((probe) => {
    const out: Record<string, unknown> = { ...probe };
    for (const handler of ['httpGet', 'tcpSocket'] as const) {
      const action = probe[handler] as { port?: unknown } | undefined;
      if (action && typeof action.port === 'string' && byName.has(action.port)) out[handler] = { ...action, port: byName.get(action.port) };
    }
    return out;
  });
}
