/**
 * The store contract suite, run unchanged against every RegistrarStore: the Kubernetes
 * store on a real kube-apiserver, and the embedded store. Whatever the registrar relies on
 * (cache reads, resourceVersion conflicts, the status subresource, conditional deletes,
 * events, schema validation, Leases) must hold for both.
 */
import type { Test } from 'tap';
import {
  ConflictError,
  InvalidObjectError,
  NotFoundError,
  type ExternalGroup,
  type ExternalWorkload,
  type Lease,
  type RegistrarStore,
  type StoreEvent,
} from '../../../src/registrar/store.ts';
import { waitFor } from '../../helpers/tmp.ts';

export interface OpenedStore {
  /** Started (caches synced); stopped by the backend when the test ends. */
  store: RegistrarStore;
  /** Namespace the workloads and groups of this test live in. */
  namespace: string;
  /** Creates an ExternalGroup as an operator would (the registrar only reads them). */
  createGroup(group: ExternalGroup): Promise<void>;
}

export interface StoreBackend {
  name: string;
  open(t: Test): Promise<OpenedStore>;
}

let counter = 0;
/** A name unique within this process: subtests share one API server. */
function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

export function workloadObject(namespace: string, name: string): ExternalWorkload {
  return {
    apiVersion: 'workload.linkerd.io/v1beta1',
    kind: 'ExternalWorkload',
    metadata: { name, namespace, labels: { app: 'billing' }, annotations: { 'meshexpansion.dev/node': name } },
    spec: {
      meshTLS: { identity: `spiffe://root.linkerd.cluster.local/vm/${name}`, serverName: `${name}.${namespace}.external.cluster.local` },
      ports: [{ name: 'http', port: 8080 }],
      workloadIPs: [{ ip: '10.1.2.3' }],
    },
  };
}

function readyCondition(status: 'True' | 'False', reason: string): NonNullable<ExternalWorkload['status']> {
  return { conditions: [{ type: 'Ready', status, reason, message: `test says ${status}`, lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }] };
}

/** Waits until the cache holds `name` at least at the resourceVersion a write returned. */
async function cached(store: RegistrarStore, namespace: string, name: string, written: ExternalWorkload): Promise<ExternalWorkload> {
  return waitFor(`${namespace}/${name} at resourceVersion ${written.metadata.resourceVersion} in the cache`, () => {
    const object = store.getWorkload(namespace, name);
    return object?.metadata.resourceVersion === written.metadata.resourceVersion ? object : undefined;
  }, 30_000);
}

function recordEvents(t: Test, store: RegistrarStore, name: string): StoreEvent[] {
  const events: StoreEvent[] = [];
  const unsubscribe = store.subscribe((event) => {
    if (event.object.metadata.name === name) events.push(event);
  });
  t.teardown(unsubscribe);
  return events;
}

export function storeContractSuite(t: Test, backend: StoreBackend): void {
  t.test(`${backend.name}: create, then get and list from the cache`, async (t) => {
    const { store, namespace } = await backend.open(t);
    const name = uniqueName('create');
    const events = recordEvents(t, store, name);
    const createsBefore = store.writes().create;
    const created = await store.createWorkload(workloadObject(namespace, name));
    t.equal(store.writes().create, createsBefore + 1, 'the create is counted');
    t.ok(created.metadata.uid, 'the API assigned a uid');
    t.ok(created.metadata.resourceVersion, 'and a resourceVersion');
    const seen = await cached(store, namespace, name, created);
    t.equal(seen.spec.meshTLS.identity, `spiffe://root.linkerd.cluster.local/vm/${name}`);
    t.equal(seen.spec.ports?.[0]?.protocol, 'TCP', 'the CRD default for protocol was applied');
    t.ok(store.listWorkloads().some((w) => w.metadata.name === name), 'listed');
    await waitFor('added event', () => (events.some((e) => e.type === 'added' && e.kind === 'ExternalWorkload') ? true : undefined));
    await t.rejects(store.createWorkload(workloadObject(namespace, name)), ConflictError, 'creating it again is a conflict');
  });

  t.test(`${backend.name}: update with a stale resourceVersion is a ConflictError`, async (t) => {
    const { store, namespace } = await backend.open(t);
    const name = uniqueName('update');
    const created = await store.createWorkload(workloadObject(namespace, name));
    await cached(store, namespace, name, created);
    const changed = structuredClone(created);
    changed.metadata.labels = { ...changed.metadata.labels, tier: 'gold' };
    changed.spec.workloadIPs = [{ ip: '10.9.9.9' }];
    const updated = await store.updateWorkload(changed);
    t.not(updated.metadata.resourceVersion, created.metadata.resourceVersion);
    const seen = await cached(store, namespace, name, updated);
    t.equal(seen.metadata.labels?.tier, 'gold', 'labels replaced');
    t.same(seen.spec.workloadIPs, [{ ip: '10.9.9.9' }], 'spec replaced');
    const stale = structuredClone(created);
    stale.metadata.labels = { app: 'other' };
    await t.rejects(store.updateWorkload(stale), ConflictError, 'the old resourceVersion lost the race');
    await t.rejects(store.updateWorkload(workloadObject(namespace, uniqueName('absent'))), NotFoundError, 'updating what does not exist is NotFound');
  });

  t.test(`${backend.name}: status goes through the status subresource only`, async (t) => {
    const { store, namespace } = await backend.open(t);
    const name = uniqueName('status');
    const created = await store.createWorkload(workloadObject(namespace, name));
    await cached(store, namespace, name, created);
    const withStatus = structuredClone(created);
    withStatus.status = readyCondition('True', 'ProxyReady');
    withStatus.spec.workloadIPs = [{ ip: '10.7.7.7' }];
    const afterStatus = await store.updateWorkloadStatus(withStatus);
    let seen = await cached(store, namespace, name, afterStatus);
    t.equal(seen.status?.conditions?.[0]?.status, 'True', 'status written');
    t.equal(seen.status?.conditions?.[0]?.reason, 'ProxyReady');
    t.same(seen.spec.workloadIPs, [{ ip: '10.1.2.3' }], 'a status write does not change spec');

    const sneaky = structuredClone(seen);
    sneaky.status = readyCondition('False', 'Sneaky');
    sneaky.metadata.labels = { app: 'billing', touched: 'yes' };
    const afterUpdate = await store.updateWorkload(sneaky);
    seen = await cached(store, namespace, name, afterUpdate);
    t.equal(seen.status?.conditions?.[0]?.status, 'True', 'a main-resource update does not change status');
    t.equal(seen.metadata.labels?.touched, 'yes');
    await t.rejects(store.updateWorkloadStatus({ ...structuredClone(seen), metadata: { ...seen.metadata, resourceVersion: created.metadata.resourceVersion } }), ConflictError, 'status writes honour resourceVersion too');
  });

  t.test(`${backend.name}: conditional delete`, async (t) => {
    const { store, namespace } = await backend.open(t);
    const name = uniqueName('delete');
    const events = recordEvents(t, store, name);
    const created = await store.createWorkload(workloadObject(namespace, name));
    const uid = created.metadata.uid!;
    const rv = created.metadata.resourceVersion!;
    await t.rejects(store.deleteWorkload(namespace, name, { uid: '00000000-0000-4000-8000-000000000000', resourceVersion: rv }), ConflictError, 'wrong uid');
    const updated = await store.updateWorkload({ ...structuredClone(created), metadata: { ...created.metadata, labels: { app: 'billing', v: '2' } } });
    await t.rejects(store.deleteWorkload(namespace, name, { uid, resourceVersion: rv }), ConflictError, 'stale resourceVersion');
    t.ok(await cached(store, namespace, name, updated), 'still there after both refusals');
    const deletesBefore = store.writes().delete;
    await store.deleteWorkload(namespace, name, { uid, resourceVersion: updated.metadata.resourceVersion! });
    t.equal(store.writes().delete, deletesBefore + 1, 'the delete is counted');
    await waitFor('gone from the cache', () => (store.getWorkload(namespace, name) === undefined ? true : undefined), 30_000);
    await waitFor('deleted event', () => (events.some((e) => e.type === 'deleted') ? true : undefined));
    t.same([...new Set(events.map((e) => e.type))].sort(), ['added', 'deleted', 'modified'], 'added, modified and deleted delivered');
    await t.rejects(store.deleteWorkload(namespace, name, { uid, resourceVersion: updated.metadata.resourceVersion! }), NotFoundError, 'deleting twice is NotFound');
  });

  t.test(`${backend.name}: the CRD schema is enforced`, async (t) => {
    const { store, namespace } = await backend.open(t);
    const threeIps = workloadObject(namespace, uniqueName('invalid'));
    threeIps.spec.workloadIPs = [{ ip: '10.0.0.1' }, { ip: '10.0.0.2' }, { ip: 'fd00::1' }];
    const err = await store.createWorkload(threeIps).then(() => undefined, (e: unknown) => e);
    t.type(err, InvalidObjectError, 'more than two workloadIPs (maxItems: 2)');
    t.match((err as Error).message, /workloadIPs/);

    const noTls = workloadObject(namespace, uniqueName('invalid')) as unknown as { spec: Record<string, unknown> };
    delete noTls.spec.meshTLS;
    await t.rejects(store.createWorkload(noTls as unknown as ExternalWorkload), InvalidObjectError, 'meshTLS is required');

    const name = uniqueName('reason');
    const created = await store.createWorkload(workloadObject(namespace, name));
    const badReason = structuredClone(created);
    badReason.status = readyCondition('False', 'not a CamelCase reason!');
    await t.rejects(store.updateWorkloadStatus(badReason), InvalidObjectError, 'a condition reason must match the CRD pattern');
    const badStatus = structuredClone(created);
    badStatus.status = { conditions: [{ type: 'Ready', status: 'Maybe' as 'True' }] };
    await t.rejects(store.updateWorkloadStatus(badStatus), InvalidObjectError, 'condition status is True, False or Unknown');
  });

  t.test(`${backend.name}: ExternalGroups are read from the cache`, async (t) => {
    const { store, namespace, createGroup } = await backend.open(t);
    const name = uniqueName('group');
    const events = recordEvents(t, store, name);
    await createGroup({
      apiVersion: 'meshexpansion.dev/v1alpha1',
      kind: 'ExternalGroup',
      metadata: { name, namespace },
      spec: {
        allowedIdentities: ['spiffe://root.linkerd.cluster.local/vm/billing/*'],
        template: { metadata: { labels: { app: 'billing' } }, ports: [{ name: 'http', port: 8080 }] },
        probes: [{ httpGet: { path: '/ready', port: 8080 }, periodSeconds: 5 }],
      },
    });
    const group = await waitFor('group in the cache', () => store.getGroup(namespace, name), 30_000);
    t.same(group.spec.allowedIdentities, ['spiffe://root.linkerd.cluster.local/vm/billing/*']);
    t.equal(group.spec.template.ports?.[0]?.protocol, 'TCP', 'schema default applied');
    await waitFor('added event', () => (events.some((e) => e.kind === 'ExternalGroup' && e.type === 'added') ? true : undefined));
  });

  t.test(`${backend.name}: Lease create and renew`, async (t) => {
    const { store } = await backend.open(t);
    const name = uniqueName('replica');
    // A Lease's times are MicroTime: RFC 3339 with exactly six fractional digits.
    const now = () => new Date().toISOString().replace(/Z$/, '000Z');
    const lease: Lease = { metadata: { name, namespace: '' }, spec: { holderIdentity: name, leaseDurationSeconds: 15, acquireTime: now(), renewTime: now() } };
    const created = await store.renewLease(lease);
    t.ok(created.metadata.resourceVersion, 'created');
    await waitFor('lease in the cache', () => (store.listLeases().find((l) => l.metadata.name === name)?.metadata.resourceVersion === created.metadata.resourceVersion ? true : undefined), 30_000);
    const renewed = await store.renewLease({ ...created, spec: { ...created.spec, renewTime: now() } });
    t.not(renewed.metadata.resourceVersion, created.metadata.resourceVersion, 'renewed');
    await t.rejects(store.renewLease({ ...created, spec: { ...created.spec, renewTime: now() } }), ConflictError, 'renewing from a stale resourceVersion is a conflict');
    t.ok(store.writes().lease >= 2, 'lease writes are counted');
    await t.rejects(store.deleteLease(name, created.metadata.resourceVersion!), ConflictError, 'a Lease renewed since is not deleted');
    await store.deleteLease(name, renewed.metadata.resourceVersion!);
    await waitFor('lease gone from the cache', () => (store.listLeases().some((l) => l.metadata.name === name) ? undefined : true), 30_000);
  });
}
