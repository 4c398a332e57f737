/**
 * The registrar's store without a cluster: objects in memory, behind the same interface
 * as the Kubernetes store. It keeps the API server's contract where the registrar relies
 * on it: every object checked against the real CRD schemas (pruning, defaults,
 * validation), one resourceVersion counter with optimistic-concurrency conflicts, uid
 * and resourceVersion delete preconditions, status written only through the status
 * subresource, watch events delivered asynchronously after the write returns.
 *
 * The demo's default; never what the registrar tests rely on (they use a real API server).
 */
import { randomUUID } from 'node:crypto';
import { crdSchemas, type CrdVersionSchema } from './crd-schema.ts';
import {
  ConflictError,
  InvalidObjectError,
  NotFoundError,
  type ConfigMap,
  type DeletePreconditions,
  type ExternalGroup,
  type ExternalWorkload,
  type Lease,
  type ObjectMeta,
  type RegistrarStore,
  type Service,
  type StoreEvent,
  type WriteVerb,
} from './store.ts';

export interface EmbeddedStoreOptions {
  /** CRD YAML texts: Linkerd's ExternalWorkload CRD and our ExternalGroup CRD. */
  crds: string[];
  /** Namespace the replicas' Leases live in. */
  leaseNamespace: string;
  now?: () => Date;
}

// The embedded store keeps no ConfigMaps (no Linkerd beside it).
type Kind = Exclude<StoreEvent['kind'], 'ConfigMap'>;
type AnyObject = ExternalGroup | ExternalWorkload | Lease | Service;

// DNS-1123 subdomain: what the API server requires of most object names.
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export class EmbeddedStore implements RegistrarStore {
  private readonly schemas = new Map<string, CrdVersionSchema>();
  private readonly objects: Record<Kind, Map<string, AnyObject>> = {
    ExternalGroup: new Map(),
    ExternalWorkload: new Map(),
    Lease: new Map(),
    Service: new Map(),
  };
  private readonly listeners = new Set<(event: StoreEvent) => void>();
  private revision = 0;
  private readonly counts: Record<WriteVerb, number> = { create: 0, update: 0, updateStatus: 0, delete: 0, lease: 0, groupStatus: 0 };
  private readonly now: () => Date;

  constructor(private readonly options: EmbeddedStoreOptions) {
    for (const text of options.crds) {
      for (const schema of crdSchemas(text)) this.schemas.set(`${schema.group}/${schema.version}/${schema.kind}`, schema);
    }
    for (const needed of ['workload.linkerd.io/v1beta1/ExternalWorkload', 'meshexpansion.dev/v1alpha1/ExternalGroup']) {
      if (!this.schemas.has(needed)) throw new Error(`embedded store: no CRD for ${needed} among the CRD files given`);
    }
    this.now = options.now ?? (() => new Date());
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {
    this.listeners.clear();
  }

  getGroup(namespace: string, name: string): ExternalGroup | undefined {
    return this.objects.ExternalGroup.get(key(namespace, name)) as ExternalGroup | undefined;
  }

  getWorkload(namespace: string, name: string): ExternalWorkload | undefined {
    return this.objects.ExternalWorkload.get(key(namespace, name)) as ExternalWorkload | undefined;
  }

  listWorkloads(): ExternalWorkload[] {
    return [...this.objects.ExternalWorkload.values()] as ExternalWorkload[];
  }

  listGroups(): ExternalGroup[] {
    return [...this.objects.ExternalGroup.values()] as ExternalGroup[];
  }

  listServices(namespace: string): Service[] {
    return [...this.objects.Service.values()].filter((o) => o.metadata.namespace === namespace) as Service[];
  }

  listLeases(): Lease[] {
    return [...this.objects.Lease.values()] as Lease[];
  }

  /** The embedded store has no Linkerd: the registrar uses its configured proxy facts. */
  getLinkerdConfigMap(): ConfigMap | undefined {
    return undefined;
  }

  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Creates or replaces an ExternalGroup (the demo's stand-in for `kubectl apply`). */
  async applyGroup(group: ExternalGroup): Promise<ExternalGroup> {
    const object = clone(group);
    this.validate(object);
    const existing = this.objects.ExternalGroup.get(key(object.metadata.namespace, object.metadata.name)) as ExternalGroup | undefined;
    if (existing) {
      // Status survives an apply of the spec, and generation counts spec changes, as on the API server.
      const specChanged = JSON.stringify(object.spec) !== JSON.stringify(existing.spec);
      object.metadata = { ...object.metadata, uid: existing.metadata.uid!, creationTimestamp: existing.metadata.creationTimestamp!, generation: (existing.metadata.generation ?? 1) + (specChanged ? 1 : 0) };
      object.status = clone(existing.status);
      return this.put('ExternalGroup', object, 'modified');
    }
    delete object.status;
    return this.put('ExternalGroup', this.fresh(object), 'added');
  }

  /** Creates or replaces a Service (the demo's and tests' stand-in for `kubectl apply`; no schema, no ClusterIP). */
  async applyService(service: Service): Promise<Service> {
    const object = clone(service);
    checkName(object.metadata.name, 'services');
    const existing = this.objects.Service.get(key(object.metadata.namespace, object.metadata.name));
    if (existing) {
      object.metadata = { ...object.metadata, uid: existing.metadata.uid!, creationTimestamp: existing.metadata.creationTimestamp! };
      return this.put('Service', object, 'modified');
    }
    return this.put('Service', this.fresh(object), 'added');
  }

  async updateGroupStatus(group: ExternalGroup): Promise<ExternalGroup> {
    const current = this.objects.ExternalGroup.get(key(group.metadata.namespace, group.metadata.name)) as ExternalGroup | undefined;
    if (!current) throw new NotFoundError(`externalgroups "${group.metadata.name}" not found in namespace ${group.metadata.namespace}`);
    if (group.metadata.resourceVersion && group.metadata.resourceVersion !== current.metadata.resourceVersion) {
      throw new ConflictError(`Operation cannot be fulfilled on externalgroups "${group.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`);
    }
    const object = clone(current);
    object.status = clone(group.status);
    this.validate(object);
    this.counts.groupStatus += 1;
    return this.put('ExternalGroup', object, 'modified');
  }

  /** Deletes an ExternalGroup; its ExternalWorkloads go with it, as the garbage collector does for owner references. */
  async deleteGroup(namespace: string, name: string): Promise<void> {
    const group = this.objects.ExternalGroup.get(key(namespace, name));
    if (!group) throw new NotFoundError(`externalgroups "${name}" not found in namespace ${namespace}`);
    this.remove('ExternalGroup', group);
    for (const workload of [...this.objects.ExternalWorkload.values()]) {
      if (workload.metadata.ownerReferences?.some((o) => o.uid === group.metadata.uid)) this.remove('ExternalWorkload', workload);
    }
  }

  async createWorkload(workload: ExternalWorkload): Promise<ExternalWorkload> {
    const object = clone(workload);
    const k = key(object.metadata.namespace, object.metadata.name);
    if (this.objects.ExternalWorkload.has(k)) throw new ConflictError(`externalworkloads "${object.metadata.name}" already exists`);
    // Create ignores status when the status subresource is enabled, as the API server does.
    delete object.status;
    this.validate(object);
    this.counts.create += 1;
    return this.put('ExternalWorkload', this.fresh(object), 'added');
  }

  async updateWorkload(workload: ExternalWorkload): Promise<ExternalWorkload> {
    const current = this.current(workload.metadata, 'externalworkloads') as ExternalWorkload;
    const object = clone(workload);
    object.status = clone(current.status);
    object.metadata = { ...object.metadata, uid: current.metadata.uid!, creationTimestamp: current.metadata.creationTimestamp! };
    this.validate(object);
    const specChanged = JSON.stringify(object.spec) !== JSON.stringify(current.spec);
    object.metadata.generation = (current.metadata.generation ?? 1) + (specChanged ? 1 : 0);
    this.counts.update += 1;
    return this.put('ExternalWorkload', object, 'modified');
  }

  async updateWorkloadStatus(workload: ExternalWorkload): Promise<ExternalWorkload> {
    const current = this.current(workload.metadata, 'externalworkloads') as ExternalWorkload;
    const object = clone(current);
    object.status = clone(workload.status);
    this.validate(object);
    this.counts.updateStatus += 1;
    return this.put('ExternalWorkload', object, 'modified');
  }

  async deleteWorkload(namespace: string, name: string, preconditions: DeletePreconditions): Promise<void> {
    const current = this.objects.ExternalWorkload.get(key(namespace, name));
    if (!current) throw new NotFoundError(`externalworkloads "${name}" not found in namespace ${namespace}`);
    if (current.metadata.uid !== preconditions.uid) {
      throw new ConflictError(`precondition failed for externalworkloads "${name}": uid is ${current.metadata.uid}, not ${preconditions.uid}`);
    }
    if (current.metadata.resourceVersion !== preconditions.resourceVersion) {
      throw new ConflictError(`precondition failed for externalworkloads "${name}": resourceVersion is ${current.metadata.resourceVersion}, not ${preconditions.resourceVersion}`);
    }
    this.counts.delete += 1;
    this.remove('ExternalWorkload', current);
  }

  async renewLease(lease: Lease): Promise<Lease> {
    const object = clone(lease);
    object.metadata.namespace = this.options.leaseNamespace;
    checkName(object.metadata.name, 'leases');
    const existing = this.objects.Lease.get(key(object.metadata.namespace, object.metadata.name));
    this.counts.lease += 1;
    if (!existing) return this.put('Lease', this.fresh(object), 'added');
    if (object.metadata.resourceVersion && object.metadata.resourceVersion !== existing.metadata.resourceVersion) {
      throw new ConflictError(`leases "${object.metadata.name}": the object has been modified; resourceVersion is ${existing.metadata.resourceVersion}`);
    }
    object.metadata = { ...object.metadata, uid: existing.metadata.uid!, creationTimestamp: existing.metadata.creationTimestamp! };
    return this.put('Lease', object, 'modified');
  }

  async deleteLease(name: string, resourceVersion: string): Promise<void> {
    const current = this.objects.Lease.get(key(this.options.leaseNamespace, name));
    if (!current) throw new NotFoundError(`leases "${name}" not found in namespace ${this.options.leaseNamespace}`);
    if (current.metadata.resourceVersion !== resourceVersion) {
      throw new ConflictError(`precondition failed for leases "${name}": resourceVersion is ${current.metadata.resourceVersion}, not ${resourceVersion}`);
    }
    this.counts.lease += 1;
    this.remove('Lease', current);
  }

  writes(): Record<WriteVerb, number> {
    return { ...this.counts };
  }

  /** The stored object an update targets, after the resourceVersion precondition. */
  private current(meta: ObjectMeta, resource: string): AnyObject {
    const existing = this.objects.ExternalWorkload.get(key(meta.namespace, meta.name));
    if (!existing) throw new NotFoundError(`${resource} "${meta.name}" not found in namespace ${meta.namespace}`);
    if (meta.resourceVersion && meta.resourceVersion !== existing.metadata.resourceVersion) {
      throw new ConflictError(`Operation cannot be fulfilled on ${resource} "${meta.name}": the object has been modified; please apply your changes to the latest version and try again`);
    }
    return existing;
  }

  private validate(object: ExternalGroup | ExternalWorkload): void {
    const [group, version] = object.apiVersion.split('/');
    const schema = this.schemas.get(`${group}/${version}/${object.kind}`);
    if (!schema) throw new InvalidObjectError(`no CRD serves ${object.apiVersion} ${object.kind}`);
    const problems = [...metadataProblems(object.metadata), ...schema.check(object as unknown as Record<string, unknown>)];
    if (problems.length) {
      throw new InvalidObjectError(`${object.kind} "${object.metadata.name}" is invalid: ${problems.join('; ')}`, problems);
    }
  }

  private fresh<T extends AnyObject>(object: T): T {
    object.metadata = {
      ...object.metadata,
      uid: randomUUID(),
      creationTimestamp: this.now().toISOString().replace(/\.\d+Z$/, 'Z'),
      generation: 1,
    };
    return object;
  }

  private put<T extends AnyObject>(kind: Kind, object: T, type: 'added' | 'modified'): T {
    this.revision += 1;
    object.metadata.resourceVersion = String(this.revision);
    // Stored frozen: reads and watch events share it, as a reflector's cache does, and a caller
    // that mutates a cached object fails loudly here instead of corrupting a real cache later.
    this.objects[kind].set(key(object.metadata.namespace, object.metadata.name), deepFreeze(object));
    this.publish({ kind, type, object } as StoreEvent);
    return clone(object);
  }

  private remove(kind: Kind, object: AnyObject): void {
    this.objects[kind].delete(key(object.metadata.namespace, object.metadata.name));
    // Every caller passes the stored object, which put() froze.
    this.publish({ kind, type: 'deleted', object } as StoreEvent);
  }

  // Watch events arrive after the write's response, as they do from a real API server.
  private publish(event: StoreEvent): void {
    setImmediate(() => {
      for (const listener of this.listeners) listener(event);
    });
  }
}

function key(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function clone<T>(value: T): T {
  return value === undefined ? value : structuredClone(value);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function checkName(name: string, resource: string): void {
  const problems = metadataProblems({ name, namespace: 'default' });
  if (problems.length) throw new InvalidObjectError(`${resource} "${name}" is invalid: ${problems.join('; ')}`, problems);
}

function metadataProblems(meta: ObjectMeta): string[] {
  const problems: string[] = [];
  if (!meta.name || meta.name.length > 253 || !SUBDOMAIN.test(meta.name)) {
    problems.push(`metadata.name: Invalid value "${meta.name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`);
  }
  if (!meta.namespace || meta.namespace.length > 63 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(meta.namespace)) {
    problems.push(`metadata.namespace: Invalid value "${meta.namespace}": must be a DNS-1123 label`);
  }
  for (const [k, v] of Object.entries(meta.labels ?? {})) {
    if (v.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v)) problems.push(`metadata.labels: Invalid value "${v}" for label ${k}`);
  }
  return problems;
}
