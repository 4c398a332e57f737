/**
 * The registrar's store on a real Kubernetes API server (@kubernetes/client-node).
 *
 * Reads come from three reflectors (src/registrar/kube-reflector.ts): ExternalGroups and
 * ExternalWorkloads in every namespace (workloads optionally label-selected to the ones a
 * registrar manages) and the replicas' Leases in the registrar's namespace. Writes go to
 * the API; the cache catches up from the watch, never from the write's response, so the
 * cache is always a state the API server has had.
 *
 * It needs exactly the RBAC of deploy/kubernetes/rbac.yaml, no more.
 */
import { CoreV1Api, CustomObjectsApi, KubeConfig, Watch } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { silentLogger } from '../log/logger.ts';
import { Reflector, type KubeObject, type ObjectList, type ReflectorEventType } from './kube-reflector.ts';
import {
  ConflictError,
  InvalidObjectError,
  LINKERD_CONFIG_NAME,
  LINKERD_NAMESPACE,
  NotFoundError,
  type ConfigMap,
  type DeletePreconditions,
  type ExternalGroup,
  type ExternalWorkload,
  type Lease,
  type RegistrarStore,
  type StoreEvent,
} from './store.ts';

export interface KubeStoreOptions {
  /** Path of a kubeconfig; absent: the in-cluster ServiceAccount config. */
  kubeconfig?: string;
  /** The registrar's namespace: where the replicas' Leases live. */
  namespace: string;
  /** Restricts the ExternalWorkload cache to the ones this registrar manages, e.g. "app.kubernetes.io/managed-by=mesh-registrar". */
  workloadLabelSelector?: string;
  log?: Logger;
  /** Backoff of list/watch retries (default 500 ms to 30 s). */
  retry?: { baseMs: number; maxMs: number };
  /** Server-side watch timeout, each watch a random value in [t, 2t) (default 300 s). */
  watchTimeoutSeconds?: number;
}

type WriteVerb = 'create' | 'update' | 'updateStatus' | 'delete' | 'lease';

interface Resource {
  group: string;
  version: string;
  plural: string;
}

const WORKLOADS: Resource = { group: 'workload.linkerd.io', version: 'v1beta1', plural: 'externalworkloads' };
const GROUPS: Resource = { group: 'meshexpansion.dev', version: 'v1alpha1', plural: 'externalgroups' };
// Leases go through the generic custom-objects client too: it returns the API's JSON as it
// is (RFC 3339 strings), where the typed CoordinationV1Api would turn MicroTimes into Dates.
const LEASES: Resource = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases' };

export class KubeStore implements RegistrarStore {
  private readonly config = new KubeConfig();
  private readonly api: CustomObjectsApi;
  private readonly groups: Reflector<ExternalGroup>;
  private readonly workloads: Reflector<ExternalWorkload>;
  private readonly leases: Reflector<Lease & KubeObject>;
  private readonly configMaps: Reflector<ConfigMap & KubeObject>;
  private readonly listeners = new Set<(event: StoreEvent) => void>();
  private readonly writeCounts: Record<WriteVerb, number> = { create: 0, update: 0, updateStatus: 0, delete: 0, lease: 0 };
  private readonly log: Logger;

  constructor(private readonly options: KubeStoreOptions) {
    this.log = options.log ?? silentLogger();
    if (options.kubeconfig) this.config.loadFromFile(options.kubeconfig);
    else this.config.loadFromCluster();
    this.api = this.config.makeApiClient(CustomObjectsApi);
    const common = {
      watch: new Watch(this.config),
      log: this.log,
      retry: options.retry ?? { baseMs: 500, maxMs: 30_000 },
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? 300,
    };
    this.groups = new Reflector<ExternalGroup>({
      ...common,
      what: 'ExternalGroups',
      path: `/apis/${GROUPS.group}/${GROUPS.version}/${GROUPS.plural}`,
      list: () => this.api.listClusterCustomObject({ ...GROUPS }) as Promise<ObjectList<ExternalGroup>>,
      onEvent: (type, object) => this.emit({ kind: 'ExternalGroup', type, object }),
    });
    this.workloads = new Reflector<ExternalWorkload>({
      ...common,
      watch: new Watch(this.config),
      what: 'ExternalWorkloads',
      path: `/apis/${WORKLOADS.group}/${WORKLOADS.version}/${WORKLOADS.plural}`,
      labelSelector: options.workloadLabelSelector,
      list: () => this.api.listClusterCustomObject({ ...WORKLOADS, labelSelector: options.workloadLabelSelector }) as Promise<ObjectList<ExternalWorkload>>,
      onEvent: (type, object) => this.emit({ kind: 'ExternalWorkload', type, object }),
    });
    this.leases = new Reflector<Lease & KubeObject>({
      ...common,
      watch: new Watch(this.config),
      what: `Leases in ${options.namespace}`,
      path: `/apis/${LEASES.group}/${LEASES.version}/namespaces/${options.namespace}/${LEASES.plural}`,
      list: () => this.api.listNamespacedCustomObject({ ...LEASES, namespace: options.namespace }) as Promise<ObjectList<Lease & KubeObject>>,
      onEvent: (type, object) => this.emit({ kind: 'Lease', type, object }),
    });
    const core = this.config.makeApiClient(CoreV1Api);
    this.configMaps = new Reflector<ConfigMap & KubeObject>({
      ...common,
      watch: new Watch(this.config),
      what: `ConfigMap ${LINKERD_NAMESPACE}/${LINKERD_CONFIG_NAME}`,
      path: `/api/v1/namespaces/${LINKERD_NAMESPACE}/configmaps`,
      // The RBAC grants this one ConfigMap by resourceNames, which needs the field selector.
      fieldSelector: `metadata.name=${LINKERD_CONFIG_NAME}`,
      list: () => core.listNamespacedConfigMap({ namespace: LINKERD_NAMESPACE, fieldSelector: `metadata.name=${LINKERD_CONFIG_NAME}` }) as unknown as Promise<ObjectList<ConfigMap & KubeObject>>,
      onEvent: (type, object) => this.emit({ kind: 'ConfigMap', type, object }),
    });
  }

  /** The API server this store talks to, for log lines and errors. */
  get server(): string {
    return this.config.getCurrentCluster()?.server ?? '(unknown)';
  }

  /** Relists after 410 Gone, per cache (for metrics, and the test that proves them). */
  relists(): { groups: number; workloads: number; leases: number } {
    return { groups: this.groups.relists, workloads: this.workloads.relists, leases: this.leases.relists };
  }

  async start(): Promise<void> {
    try {
      await Promise.all([this.groups.start(), this.workloads.start(), this.leases.start(), this.configMaps.start()]);
    } catch (err) {
      await this.stop();
      throw new Error(`Kubernetes API ${this.server}: ${(err as Error).message}; check the kubeconfig and the RBAC of deploy/kubernetes/rbac.yaml`);
    }
  }

  async stop(): Promise<void> {
    this.groups.stop();
    this.workloads.stop();
    this.leases.stop();
    this.configMaps.stop();
  }

  getGroup(namespace: string, name: string): ExternalGroup | undefined {
    return this.groups.get(namespace, name);
  }

  getWorkload(namespace: string, name: string): ExternalWorkload | undefined {
    return this.workloads.get(namespace, name);
  }

  listWorkloads(): ExternalWorkload[] {
    return this.workloads.list();
  }

  listLeases(): Lease[] {
    return this.leases.list();
  }

  getLinkerdConfigMap(): ConfigMap | undefined {
    return this.configMaps.get(LINKERD_NAMESPACE, LINKERD_CONFIG_NAME);
  }

  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: { kind: StoreEvent['kind']; type: ReflectorEventType; object: unknown }): void {
    for (const listener of this.listeners) {
      try {
        listener(event as StoreEvent);
      } catch (err) {
        this.log.error({ err }, 'store subscriber threw');
      }
    }
  }

  async createWorkload(workload: ExternalWorkload): Promise<ExternalWorkload> {
    const { namespace } = workload.metadata;
    this.writeCounts.create += 1;
    return call(`create ExternalWorkload ${namespace}/${workload.metadata.name}`, () =>
      this.api.createNamespacedCustomObject({ ...WORKLOADS, namespace, body: { ...workload, metadata: stripServerFields(workload.metadata) } }));
  }

  async updateWorkload(workload: ExternalWorkload): Promise<ExternalWorkload> {
    const { namespace, name } = workload.metadata;
    // A PUT replaces the whole object: start from what the API server has (finalizers and
    // fields other controllers own survive) and replace only what the registrar owns.
    const current = this.workloads.get(namespace, name);
    const body: ExternalWorkload = {
      ...(current ?? workload),
      metadata: {
        ...(current?.metadata ?? workload.metadata),
        labels: workload.metadata.labels,
        annotations: workload.metadata.annotations,
        ownerReferences: workload.metadata.ownerReferences,
        resourceVersion: workload.metadata.resourceVersion ?? current?.metadata.resourceVersion,
      },
      spec: workload.spec,
    };
    this.writeCounts.update += 1;
    return call(`update ExternalWorkload ${namespace}/${name}`, () =>
      this.api.replaceNamespacedCustomObject({ ...WORKLOADS, namespace, name, body }));
  }

  async updateWorkloadStatus(workload: ExternalWorkload): Promise<ExternalWorkload> {
    const { namespace, name } = workload.metadata;
    const current = this.workloads.get(namespace, name);
    const body: ExternalWorkload = {
      ...(current ?? workload),
      metadata: { ...(current?.metadata ?? workload.metadata), resourceVersion: workload.metadata.resourceVersion ?? current?.metadata.resourceVersion },
      status: workload.status ?? {},
    };
    this.writeCounts.updateStatus += 1;
    return call(`update status of ExternalWorkload ${namespace}/${name}`, () =>
      this.api.replaceNamespacedCustomObjectStatus({ ...WORKLOADS, namespace, name, body }));
  }

  async deleteWorkload(namespace: string, name: string, preconditions: DeletePreconditions): Promise<void> {
    this.writeCounts.delete += 1;
    await call(`delete ExternalWorkload ${namespace}/${name}`, () =>
      this.api.deleteNamespacedCustomObject({ ...WORKLOADS, namespace, name, body: { preconditions: { uid: preconditions.uid, resourceVersion: preconditions.resourceVersion } } }));
  }

  async renewLease(lease: Lease): Promise<Lease> {
    const { namespace } = this.options;
    const { name } = lease.metadata;
    const current = this.leases.get(namespace, name);
    const resourceVersion = lease.metadata.resourceVersion ?? current?.metadata.resourceVersion;
    const body = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { ...stripServerFields(lease.metadata), namespace, resourceVersion },
      spec: lease.spec,
    };
    this.writeCounts.lease += 1;
    if (resourceVersion === undefined) {
      return call(`create Lease ${namespace}/${name}`, () => this.api.createNamespacedCustomObject({ ...LEASES, namespace, body }));
    }
    return call(`renew Lease ${namespace}/${name}`, () => this.api.replaceNamespacedCustomObject({ ...LEASES, namespace, name, body }));
  }

  async deleteLease(name: string, resourceVersion: string): Promise<void> {
    const { namespace } = this.options;
    this.writeCounts.lease += 1;
    await call(`delete Lease ${namespace}/${name}`, () => this.api.deleteNamespacedCustomObject({ ...LEASES, namespace, name, body: { preconditions: { resourceVersion } } }));
  }

  writes(): Record<WriteVerb, number> {
    return { ...this.writeCounts };
  }
}

/** Metadata a create must not carry (the API server sets them). */
function stripServerFields<M extends { uid?: string; resourceVersion?: string; creationTimestamp?: string; deletionTimestamp?: string; generation?: number }>(metadata: M): M {
  const { uid: _uid, resourceVersion: _rv, creationTimestamp: _created, deletionTimestamp: _deleted, generation: _generation, ...rest } = metadata;
  return rest as M;
}

interface ApiStatus {
  message?: string;
  reason?: string;
  details?: { causes?: Array<{ field?: string; message?: string }> };
}

/** Runs one API call; maps the API server's refusals to the store's errors. */
async function call<T>(what: string, request: () => Promise<unknown>): Promise<T> {
  try {
    return (await request()) as T;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'number') throw new Error(`${what}: ${(err as Error).message}`);
    const body = (err as { body?: unknown }).body;
    let status: ApiStatus = {};
    try {
      status = (typeof body === 'string' ? JSON.parse(body) : body ?? {}) as ApiStatus;
    } catch {
      status = { message: String(body) };
    }
    const message = `${what}: ${status.message ?? `HTTP ${code}`}`;
    if (code === 409 || code === 412) throw new ConflictError(message);
    if (code === 404) throw new NotFoundError(message);
    if (code === 422) {
      const causes = (status.details?.causes ?? []).map((c) => (c.field ? `${c.field}: ${c.message ?? ''}` : c.message ?? ''));
      throw new InvalidObjectError(message, causes);
    }
    if (code === 403) throw new Error(`${message} (forbidden: the registrar's RBAC is deploy/kubernetes/rbac.yaml)`);
    throw new Error(message);
  }
}
