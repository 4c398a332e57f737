/**
 * The ExternalGroup's status: what `kubectl get externalgroups` shows of the fleet. Counts
 * (workloads, Ready) over every replica's workloads, from the watch cache, and conditions:
 * Accepted (the registrar admits machines with it), TemplateValid (every workload made
 * from the template is what Linkerd needs) and ServicePortsMatched (every Service of the
 * namespace that selects the group's workloads targets a port the template lists; Linkerd
 * drops any other from the EndpointSlice).
 *
 * One replica writes it: the one with the lowest name among those whose Lease is live, so
 * replicas do not race each other. A group's status is written only when it differs from
 * the stored one, at most once per interval: a fleet reconnecting at once costs a few
 * status writes, not one per machine.
 */
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../log/logger.ts';
import { parseCidr } from '../util/cidr.ts';
import { LABEL, PROXY_PORT_NAME, readyCondition } from './desired.ts';
import { leaseExpiry, leaseName } from './leases.ts';
import { ConflictError, NotFoundError, type Condition, type ExternalGroup, type ExternalGroupStatus, type ExternalWorkload, type RegistrarStore, type Service, type WorkloadPort } from './store.ts';

export const GROUP_CONDITION = { accepted: 'Accepted', templateValid: 'TemplateValid', servicePorts: 'ServicePortsMatched' } as const;

type ConditionInput = Omit<Condition, 'lastTransitionTime'>;

const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why a label or annotation key is not one the API server takes, or undefined. */
function keyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : '';
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (slash >= 0 && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return `key ${JSON.stringify(key)}: the prefix must be a DNS subdomain`;
  if (name.length > 63 || !LABEL_NAME.test(name)) return `key ${JSON.stringify(key)}: the name must be at most 63 alphanumeric characters, '-', '_' or '.', starting and ending alphanumeric`;
  return undefined;
}

/** What keeps the registrar from making every workload of the group exactly as the template says; empty when nothing. */
export function templateProblems(group: ExternalGroup): string[] {
  const template = group.spec.template ?? {};
  const problems: string[] = [];
  for (const [key, value] of Object.entries(template.metadata?.labels ?? {})) {
    const problem = keyProblem(key);
    if (problem) problems.push(`label ${problem}`);
    if (value.length > 63 || (value !== '' && !LABEL_NAME.test(value))) problems.push(`label ${key}: the value ${JSON.stringify(value.slice(0, 80))} is not a label value (at most 63 alphanumeric characters, '-', '_' or '.')`);
    if (key === LABEL.group) problems.push(`label ${key} is the registrar's own (the group's name); the template's value is ignored`);
  }
  for (const key of Object.keys(template.metadata?.annotations ?? {})) {
    const problem = keyProblem(key);
    if (problem) problems.push(`annotation ${problem}`);
    if (key.startsWith('meshexpansion.dev/')) problems.push(`annotation ${key}: keys under meshexpansion.dev/ are the registrar's own`);
  }
  const names = new Set<string>();
  const numbers = new Set<string>();
  for (const port of template.ports ?? []) {
    if (port.name === PROXY_PORT_NAME) problems.push(`port ${port.port} is named ${PROXY_PORT_NAME}: each machine lists its own proxy's inbound port under that name, so this one is left out`);
    else if (port.name && names.has(port.name)) problems.push(`port name ${port.name} appears twice`);
    const number = `${port.port}/${port.protocol ?? 'TCP'}`;
    if (numbers.has(number)) problems.push(`port ${number} appears twice`);
    if (port.name) names.add(port.name);
    numbers.add(number);
  }
  return problems;
}

/** The labels every workload of the group has (the template's, then the registrar's group label). */
function workloadLabels(group: ExternalGroup): Record<string, string> {
  return { ...group.spec.template?.metadata?.labels, [LABEL.group]: group.metadata.name };
}

/** Whether a Service's selector selects the group's workloads (an empty or absent selector selects nothing: no endpoints are managed). */
export function selectsGroup(service: Service, group: ExternalGroup): boolean {
  const selector = Object.entries(service.spec?.selector ?? {});
  if (selector.length === 0) return false;
  const labels = workloadLabels(group);
  return selector.every(([k, v]) => labels[k] === v);
}

/**
 * The Service ports whose targetPort no template port matches, as Linkerd's
 * ExternalWorkload endpoints controller matches them: a name equal to a template port's
 * name, or a number equal to a template port's number, with the same protocol. An absent
 * targetPort is the port itself.
 */
export function unmatchedServicePorts(service: Service, ports: WorkloadPort[]): string[] {
  const out: string[] = [];
  for (const servicePort of service.spec?.ports ?? []) {
    const protocol = servicePort.protocol ?? 'TCP';
    const target = servicePort.targetPort ?? servicePort.port;
    const matches = ports.some((p) => (p.protocol ?? 'TCP') === protocol && (typeof target === 'string' && !/^\d+$/.test(target) ? p.name === target : p.port === Number(target)));
    if (!matches) out.push(`Service ${service.metadata.name} port ${servicePort.name ?? servicePort.port} (targetPort ${target}/${protocol})`);
  }
  return out;
}

function acceptedCondition(group: ExternalGroup): ConditionInput {
  const invalid = (group.spec.allowedIPs ?? []).filter((entry) => !entry.includes('/') || !parseCidr(entry));
  if (invalid.length) {
    return { type: GROUP_CONDITION.accepted, status: 'False', reason: 'InvalidAllowedIPs', message: `spec.allowedIPs ${JSON.stringify(invalid)} are not CIDRs and are ignored: machines announcing addresses in them are refused (IPNotAllowed); write them as address/prefix` };
  }
  return { type: GROUP_CONDITION.accepted, status: 'True', reason: 'Accepted', message: `machines with a SPIFFE ID matching spec.allowedIdentities may join (up to ${group.spec.maxWorkloadsPerIdentity ?? 1} workload(s) per identity)` };
}

function templateCondition(group: ExternalGroup): ConditionInput {
  const problems = templateProblems(group);
  if (problems.length) return { type: GROUP_CONDITION.templateValid, status: 'False', reason: 'InvalidTemplate', message: problems.join('; ') };
  return { type: GROUP_CONDITION.templateValid, status: 'True', reason: 'Valid', message: 'every workload gets the template\'s labels, annotations and ports' };
}

function servicePortsCondition(group: ExternalGroup, services: Service[]): { condition: ConditionInput; unmatched: number } {
  const selecting = services.filter((s) => selectsGroup(s, group));
  const unmatched = selecting.flatMap((s) => unmatchedServicePorts(s, group.spec.template?.ports ?? []));
  if (unmatched.length) {
    return {
      unmatched: unmatched.length,
      condition: {
        type: GROUP_CONDITION.servicePorts,
        status: 'False',
        reason: 'UnmatchedTargetPort',
        message: `${unmatched.join(', ')} match no port of spec.template.ports by name or number and protocol: Linkerd serves no endpoint of this group for them; add the port to the template or change the targetPort`,
      },
    };
  }
  const message = selecting.length === 0
    ? 'no Service in the namespace selects the group\'s workloads'
    : `every targetPort of ${selecting.map((s) => s.metadata.name).sort().join(', ')} matches a template port`;
  return { unmatched: 0, condition: { type: GROUP_CONDITION.servicePorts, status: 'True', reason: 'PortsMatched', message } };
}

export interface GroupCounts {
  workloads: number;
  ready: number;
}

/** Workloads and Ready ones per group ("namespace/name"), in one pass over the cache. */
export function countByGroup(workloads: ExternalWorkload[]): Map<string, GroupCounts> {
  const counts = new Map<string, GroupCounts>();
  for (const w of workloads) {
    const group = w.metadata.labels?.[LABEL.group];
    if (group === undefined) continue;
    const id = `${w.metadata.namespace}/${group}`;
    let c = counts.get(id);
    if (!c) counts.set(id, (c = { workloads: 0, ready: 0 }));
    c.workloads += 1;
    if (readyCondition(w)?.status === 'True') c.ready += 1;
  }
  return counts;
}

/** The group's status as it should be; lastTransitionTime moves only when a condition's status flips. */
export function desiredGroupStatus(group: ExternalGroup, counts: GroupCounts | undefined, services: Service[], now: Date): { status: ExternalGroupStatus; unmatchedPorts: number } {
  const ports = servicePortsCondition(group, services);
  const stamp = now.toISOString().replace(/\.\d+Z$/, 'Z');
  const conditions = [acceptedCondition(group), templateCondition(group), ports.condition].map((c): Condition => {
    const existing = group.status?.conditions?.find((e) => e.type === c.type);
    return { ...c, lastTransitionTime: existing?.status === c.status && existing.lastTransitionTime ? existing.lastTransitionTime : stamp };
  });
  return {
    unmatchedPorts: ports.unmatched,
    status: {
      ...(group.metadata.generation !== undefined ? { observedGeneration: group.metadata.generation } : {}),
      workloads: counts?.workloads ?? 0,
      readyWorkloads: counts?.ready ?? 0,
      conditions,
    },
  };
}

/** Whether two statuses say the same (lastTransitionTime moves only with a status, so it is compared too). */
export function sameGroupStatus(a: ExternalGroupStatus | undefined, b: ExternalGroupStatus): boolean {
  const canonical = (s: ExternalGroupStatus | undefined) => JSON.stringify({
    observedGeneration: s?.observedGeneration,
    workloads: s?.workloads ?? 0,
    readyWorkloads: s?.readyWorkloads ?? 0,
    conditions: [...(s?.conditions ?? [])].sort((x, y) => x.type.localeCompare(y.type)).map((c) => [c.type, c.status, c.reason ?? '', c.message ?? '', c.lastTransitionTime ?? '']),
  });
  return canonical(a) === canonical(b);
}

export interface GroupStatusOptions {
  store: RegistrarStore;
  replica: string;
  log: Logger;
  registry?: Registry;
  /** Shortest time between two status writes of one group (ms). */
  intervalMs?: number;
  now?: () => number;
}

export class GroupStatusWriter {
  private readonly dirty = new Set<string>();
  private readonly lastWrite = new Map<string, number>();
  /** Service ports matching no template port, per group (the metric; every replica computes it). */
  private readonly unmatched = new Map<string, number>();
  private readonly now: () => number;
  private timer?: NodeJS.Timeout;
  private unsubscribe?: () => void;
  private busy = false;
  private writer = false;

  constructor(private readonly options: GroupStatusOptions) {
    this.now = options.now ?? Date.now;
    if (options.registry) {
      const unmatched = this.unmatched;
      new Gauge({
        name: 'mesh_registrar_unmatched_service_ports',
        help: 'Service ports selecting an ExternalGroup\'s workloads whose targetPort matches no port of the group\'s template (Linkerd serves no endpoint for them).',
        labelNames: ['namespace', 'group'],
        registers: [options.registry],
        collect(this: Gauge<'namespace' | 'group'>) {
          this.reset();
          for (const [id, n] of unmatched) {
            const [namespace, group] = id.split('/');
            this.set({ namespace: namespace!, group: group! }, n);
          }
        },
      });
    }
  }

  start(): void {
    this.unsubscribe = this.options.store.subscribe((event) => {
      if (event.kind === 'ExternalGroup') this.dirty.add(`${event.object.metadata.namespace}/${event.object.metadata.name}`);
      else if (event.kind === 'Lease') {
        // Renewals are frequent: only a change of writer makes every group worth a look.
        const writer = this.isWriter();
        if (writer && !this.writer) this.markAll();
        this.writer = writer;
      } else if (event.kind === 'ExternalWorkload') {
        const group = event.object.metadata.labels?.[LABEL.group];
        if (group) this.dirty.add(`${event.object.metadata.namespace}/${group}`);
      } else if (event.kind === 'Service') this.markAll(event.object.metadata.namespace);
    });
    this.writer = this.isWriter();
    this.markAll();
    this.timer = setInterval(() => void this.flush(), Math.min(1000, this.interval()));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
  }

  /** Whether this replica writes group statuses: the lowest name among replicas with a live Lease (itself when it sees none). */
  isWriter(): boolean {
    const now = this.now();
    const mine = leaseName(this.options.replica);
    return !this.options.store.listLeases().some((l) => l.metadata.name < mine && l.metadata.name.startsWith(leaseName('')) && leaseExpiry(l) > now);
  }

  private interval(): number {
    return this.options.intervalMs ?? 1000;
  }

  private markAll(namespace?: string): void {
    for (const group of this.options.store.listGroups()) {
      if (namespace === undefined || group.metadata.namespace === namespace) this.dirty.add(`${group.metadata.namespace}/${group.metadata.name}`);
    }
  }

  private async flush(): Promise<void> {
    if (this.busy || this.dirty.size === 0) return;
    this.busy = true;
    try {
      const writer = (this.writer = this.isWriter());
      const counts = countByGroup(this.options.store.listWorkloads());
      for (const id of [...this.dirty]) {
        const [namespace, name] = id.split('/') as [string, string];
        const group = this.options.store.getGroup(namespace, name);
        if (!group) {
          this.dirty.delete(id);
          this.unmatched.delete(id);
          this.lastWrite.delete(id);
          continue;
        }
        const { status, unmatchedPorts } = desiredGroupStatus(group, counts.get(id), this.options.store.listServices(namespace), new Date(this.now()));
        this.unmatched.set(id, unmatchedPorts);
        if (!writer || sameGroupStatus(group.status, status)) {
          this.dirty.delete(id);
          continue;
        }
        // Coalesced: what is written when the interval allows is computed from the latest cache.
        if (this.now() - (this.lastWrite.get(id) ?? 0) < this.interval()) continue;
        this.dirty.delete(id);
        this.lastWrite.set(id, this.now());
        try {
          await this.options.store.updateGroupStatus({ ...group, status });
        } catch (err) {
          // The cache was behind (the watch brings the newer group and marks it again), or the group went away.
          if (!(err instanceof ConflictError || err instanceof NotFoundError)) this.options.log.warn({ group: id, err: (err as Error).message }, 'ExternalGroup status write failed; retrying');
          this.dirty.add(id);
        }
      }
    } finally {
      this.busy = false;
    }
  }
}
