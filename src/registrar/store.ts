/**
 * The registrar's only state is in a store of Kubernetes objects. Two implementations sit
 * behind this one interface: the Kubernetes store (informers + the real API server, what
 * every registrar test runs against) and the embedded store (in memory, same CRD schema
 * checks and resourceVersion semantics; the demo's default).
 *
 * Reads come from the store's cache (informers), never from polling; writes go to the API
 * and the cache catches up from the watch. Every write can fail with ConflictError
 * (stale resourceVersion / failed precondition) or NotFoundError; callers retry
 * level-triggered (recompute desired state from the cache, compare, write again).
 */

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  lastProbeTime?: string;
}

export interface WorkloadPort {
  port: number;
  name?: string;
  protocol?: 'TCP' | 'UDP';
}

/** Linkerd's ExternalWorkload, workload.linkerd.io/v1beta1 (schema: deploy/linkerd/external-workload.crd.yaml). */
export interface ExternalWorkload {
  apiVersion: 'workload.linkerd.io/v1beta1';
  kind: 'ExternalWorkload';
  metadata: ObjectMeta;
  spec: {
    meshTLS: { identity: string; serverName: string };
    ports?: WorkloadPort[];
    workloadIPs?: Array<{ ip: string }>;
  };
  status?: { conditions?: Condition[] };
}

/** Our ExternalGroup, meshexpansion.dev/v1alpha1 (deploy/kubernetes/). The template for ExternalWorkloads. */
export interface ExternalGroup {
  apiVersion: 'meshexpansion.dev/v1alpha1';
  kind: 'ExternalGroup';
  metadata: ObjectMeta;
  spec: {
    /** SPIFFE IDs, or patterns with a trailing `/*`, allowed to join the group. */
    allowedIdentities: string[];
    /** How many ExternalWorkloads one SPIFFE ID may hold in this group (default 1). */
    maxWorkloadsPerIdentity?: number;
    /** CIDRs workload IPs may be in besides the address the connection comes from. */
    allowedIPs?: string[];
    /** Whether a machine may ask for a name of its own (workload.name) instead of the derived one. */
    allowCustomNames?: boolean;
    /** When another machine (another or no machine id) may take a name over: once the holder is gone beyond the grace (default), or at once. */
    nameTakeover?: 'AfterGrace' | 'Immediate';
    template: {
      metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
      ports?: WorkloadPort[];
      /** spec.meshTLS.serverName of every workload; unset, it comes from a DNS SAN of the machine's SVID. */
      serverName?: string;
    };
    /** Kubernetes probe semantics (httpGet, tcpSocket, grpc, exec + timing fields). */
    probes?: Array<Record<string, unknown>>;
  };
}

/** A coordination.k8s.io/v1 Lease, one per registrar replica. */
export interface Lease {
  metadata: ObjectMeta;
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    renewTime?: string;
    acquireTime?: string;
  };
}

/** A core/v1 ConfigMap (only what the registrar reads: Linkerd's linkerd-config). */
export interface ConfigMap {
  metadata: ObjectMeta;
  data?: Record<string, string>;
}

export type StoreEvent =
  | { kind: 'ExternalGroup'; type: 'added' | 'modified' | 'deleted'; object: ExternalGroup }
  | { kind: 'ExternalWorkload'; type: 'added' | 'modified' | 'deleted'; object: ExternalWorkload }
  | { kind: 'Lease'; type: 'added' | 'modified' | 'deleted'; object: Lease }
  | { kind: 'ConfigMap'; type: 'added' | 'modified' | 'deleted'; object: ConfigMap };

/** Where Linkerd's control plane keeps linkerd-config (deploy/kubernetes/rbac.yaml grants get/list/watch there). */
export const LINKERD_NAMESPACE = 'linkerd';
export const LINKERD_CONFIG_NAME = 'linkerd-config';

export interface DeletePreconditions {
  uid: string;
  resourceVersion: string;
}

export interface RegistrarStore {
  /** Starts the watches; resolves once every cache has synced (initial list done). */
  start(): Promise<void>;
  stop(): Promise<void>;

  /** Cache reads. */
  getGroup(namespace: string, name: string): ExternalGroup | undefined;
  getWorkload(namespace: string, name: string): ExternalWorkload | undefined;
  listWorkloads(): ExternalWorkload[];
  listLeases(): Lease[];
  /** Linkerd's linkerd-config ConfigMap (LINKERD_NAMESPACE/LINKERD_CONFIG_NAME), from a watch; undefined when absent. */
  getLinkerdConfigMap(): ConfigMap | undefined;
  /** Every cache change, including a relist after a 410. Returns an unsubscribe function. */
  subscribe(listener: (event: StoreEvent) => void): () => void;

  /** Writes. metadata.resourceVersion, when set on update, is a precondition. */
  createWorkload(workload: ExternalWorkload): Promise<ExternalWorkload>;
  /** Replaces metadata (labels, annotations, ownerReferences) and spec; not status. */
  updateWorkload(workload: ExternalWorkload): Promise<ExternalWorkload>;
  /** Writes status through the status subresource. */
  updateWorkloadStatus(workload: ExternalWorkload): Promise<ExternalWorkload>;
  /** Conditional delete: fails with ConflictError unless uid and resourceVersion still match. */
  deleteWorkload(namespace: string, name: string, preconditions: DeletePreconditions): Promise<void>;

  /** Creates or renews this replica's Lease (namespace from the store's options). */
  renewLease(lease: Lease): Promise<Lease>;
  /** Deletes a replica's Lease; fails with ConflictError unless resourceVersion still matches (it was not renewed meanwhile). */
  deleteLease(name: string, resourceVersion: string): Promise<void>;

  /** Writes made through this store, by verb, for metrics and the zero-writes benchmark. */
  writes(): Record<'create' | 'update' | 'updateStatus' | 'delete' | 'lease', number>;
}

/** A write lost a race: stale resourceVersion, failed precondition, or the object already exists. */
export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}

export class NotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

/** The API server (or the embedded store's schema check) refused the object as invalid. */
export class InvalidObjectError extends Error {
  constructor(message: string, readonly causes: string[] = []) {
    super(message);
    this.name = 'InvalidObjectError';
  }
}
