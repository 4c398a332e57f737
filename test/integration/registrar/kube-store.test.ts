/**
 * The store contract suite against KubeStore on a real kube-apiserver, running under the
 * registrar's ServiceAccount identity and the RBAC of deploy/kubernetes (not cluster-admin),
 * plus what only a real API server can show: 410 Gone after etcd compaction, and a relist
 * that converges.
 */
import t, { type Test } from 'tap';
import { KubeStore } from '../../../src/registrar/kube-store.ts';
import type { ExternalWorkload, StoreEvent } from '../../../src/registrar/store.ts';
import { KubeCluster, REGISTRAR_NAMESPACE, REGISTRAR_SERVICE_ACCOUNT, SKIP_WITHOUT_KUBE } from '../../helpers/kube.ts';
import { TcpProxy } from '../../helpers/tcp-proxy.ts';
import { waitFor } from '../../helpers/tmp.ts';
import { storeContractSuite, workloadObject, type StoreBackend } from './store-suite.ts';

const NAMESPACE = 'mh-store';

t.test('KubeStore on a real kube-apiserver', { skip: SKIP_WITHOUT_KUBE }, async (t) => {
  const cluster = await KubeCluster.start(t);
  await cluster.kubectl(['create', 'namespace', NAMESPACE]);

  async function openStore(t: Test, kubeconfig = cluster.registrarKubeconfig): Promise<KubeStore> {
    const store = new KubeStore({ kubeconfig, namespace: REGISTRAR_NAMESPACE, retry: { baseMs: 100, maxMs: 1000 } });
    t.teardown(() => store.stop());
    await store.start();
    return store;
  }

  const backend: StoreBackend = {
    name: 'KubeStore',
    async open(t) {
      return {
        store: await openStore(t),
        namespace: NAMESPACE,
        createGroup: async (group) => {
          await cluster.kubectl(['create', '-f', '-'], { input: JSON.stringify(group) });
        },
      };
    },
  };
  storeContractSuite(t, backend);

  t.test('start() fails with an actionable error when RBAC does not allow the lists', async (t) => {
    const stranger = await cluster.kubeconfigFor({ name: 'system:serviceaccount:default:stranger', groups: ['system:serviceaccounts'] });
    const store = new KubeStore({ kubeconfig: stranger, namespace: REGISTRAR_NAMESPACE, retry: { baseMs: 100, maxMs: 1000 } });
    t.teardown(() => store.stop());
    await t.rejects(store.start(), /forbidden|403[\s\S]*rbac\.yaml/i);
  });

  t.test('a watch resumed after compaction gets 410 Gone, relists, and the cache converges', async (t) => {
    // The store under test reaches the API server through a relay the test can cut; the
    // writer (same identity and RBAC) goes direct.
    const relay = await TcpProxy.start(t, cluster.port);
    const relayed = await cluster.kubeconfigFor(
      { name: `system:serviceaccount:${REGISTRAR_NAMESPACE}:${REGISTRAR_SERVICE_ACCOUNT}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${REGISTRAR_NAMESPACE}`] },
      `https://127.0.0.1:${relay.port}`,
    );
    const store = await openStore(t, relayed);
    const writer = await openStore(t);
    const names = { kept: 'gone-kept', deleted: 'gone-deleted', changed: 'gone-changed', added: 'gone-added' };
    const written: Record<string, ExternalWorkload> = {};
    for (const name of [names.kept, names.deleted, names.changed]) written[name] = await writer.createWorkload(workloadObject(NAMESPACE, name));
    for (const name of [names.kept, names.deleted, names.changed]) {
      await waitFor(`${name} in the cache`, () => (store.getWorkload(NAMESPACE, name)?.metadata.resourceVersion === written[name]!.metadata.resourceVersion ? true : undefined), 30_000);
    }
    const events: StoreEvent[] = [];
    store.subscribe((event) => events.push(event));
    const relistsBefore = store.relists().workloads;

    relay.cut();
    const deleted = written[names.deleted]!;
    await writer.deleteWorkload(NAMESPACE, names.deleted, { uid: deleted.metadata.uid!, resourceVersion: deleted.metadata.resourceVersion! });
    const changed = structuredClone(written[names.changed]!);
    changed.metadata.labels = { app: 'billing', changed: 'while-cut' };
    await writer.updateWorkload(changed);
    await writer.createWorkload(workloadObject(NAMESPACE, names.added));
    // Every resourceVersion the store has seen is now compacted in etcd, and the restarted
    // API server's watch cache starts after it: resuming the watch can only get 410.
    await cluster.compactEtcd();
    await cluster.restartApiserver();
    relay.restore();

    await waitFor('the cache to converge after the relist', () => {
      const converged = store.getWorkload(NAMESPACE, names.deleted) === undefined
        && store.getWorkload(NAMESPACE, names.added) !== undefined
        && store.getWorkload(NAMESPACE, names.changed)?.metadata.labels?.changed === 'while-cut'
        && store.getWorkload(NAMESPACE, names.kept) !== undefined;
      return converged ? true : undefined;
    }, 120_000, 200);
    t.ok(store.relists().workloads > relistsBefore, `relisted after 410 (relists ${relistsBefore} -> ${store.relists().workloads})`);
    const of = (name: string) => events.filter((e) => e.kind === 'ExternalWorkload' && e.object.metadata.name === name).map((e) => e.type);
    t.same(of(names.deleted), ['deleted'], 'the object deleted while disconnected is reported deleted');
    t.same(of(names.added), ['added'], 'the object created while disconnected is reported added');
    t.same(of(names.changed), ['modified'], 'the object changed while disconnected is reported modified');
    t.same(of(names.kept), [], 'an unchanged object produces no event');
  });
});
