/**
 * Linkerd fidelity (issue 19) on a real kube-apiserver with the registrar under the RBAC
 * of deploy/kubernetes: the ExternalWorkload is exactly what the template and the machine
 * say (removed template keys go, foreign keys stay), the proxy's inbound port is listed as
 * linkerd-proxy, the ExternalGroup's status shows the fleet, and a Service whose targetPort
 * no template port matches raises a condition.
 */
import t from 'tap';
import { workloadName } from '../../../src/protocol/workload-name.ts';
import { KubeCluster, SKIP_WITHOUT_KUBE } from '../../helpers/kube.ts';
import { makePki, RawClient, RegistrarCluster, startHarness, TRUST_DOMAIN } from '../../helpers/registrar.ts';
import { waitFor } from '../../helpers/tmp.ts';

t.setTimeout(600_000);

const VM_ID = `spiffe://${TRUST_DOMAIN}/vm/web`;

t.test('Linkerd fidelity on a real kube-apiserver', { skip: SKIP_WITHOUT_KUBE }, async (t) => {
  const cluster = await KubeCluster.start(t);
  const pki = await makePki(t);
  const world = new RegistrarCluster(cluster, pki, 'mh-fid');

  t.test('owned keys: a label and an annotation removed from the template leave every workload with one write each; foreign keys stay', async (t) => {
    const ns = await world.namespace(t);
    const allowedIdentities = [`spiffe://${TRUST_DOMAIN}/vm/*`];
    const base = { name: 'web', namespace: ns, allowedIdentities, maxWorkloadsPerIdentity: 2 };
    await world.applyGroup({ ...base, labels: { app: 'web', tier: 'vm' }, annotations: { 'config.linkerd.io/opaque-ports': '5432', 'example.com/owner': 'tests' } });
    const r = await world.replica(t, { replica: 'reg-keys' });
    const names = ['vm-1', 'vm-2'].map((nodeName) => workloadName({ namespace: ns, group: 'web', nodeName, spiffeId: VM_ID }));
    for (const nodeName of ['vm-1', 'vm-2']) await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName });
    for (const name of names) {
      const workload = await world.waitForReady(ns, name, 'True');
      t.equal(workload.metadata.labels?.tier, 'vm');
      t.equal(workload.metadata.annotations?.['config.linkerd.io/opaque-ports'], '5432');
      // Another controller's keys, one of them a key the template also had once.
      await cluster.kubectl(['label', '-n', ns, 'externalworkload', name, 'other.example/zone=a']);
      await cluster.kubectl(['annotate', '-n', ns, 'externalworkload', name, 'other.example/note=kept']);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const before = await cluster.writeRequests({ group: 'workload.linkerd.io' });

    await world.applyGroup({ ...base, labels: { app: 'web' }, annotations: { 'example.com/owner': 'tests' } });
    for (const name of names) {
      const trimmed = await waitFor(`${name} without tier and opaque-ports`, async () => {
        const w = await world.getWorkload(ns, name);
        return w && !('tier' in (w.metadata.labels ?? {})) && !('config.linkerd.io/opaque-ports' in (w.metadata.annotations ?? {})) ? w : undefined;
      }, 30_000, 100);
      t.equal(trimmed.metadata.labels?.['other.example/zone'], 'a', 'a foreign label stays');
      t.equal(trimmed.metadata.annotations?.['other.example/note'], 'kept', 'a foreign annotation stays');
      t.equal(trimmed.metadata.labels?.app, 'web');
      t.same(JSON.parse(trimmed.metadata.annotations?.['meshexpansion.dev/template-keys'] ?? '{}'), { labels: ['app'], annotations: ['example.com/owner'] }, 'the record lists what the registrar set');
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const after = await cluster.writeRequests({ group: 'workload.linkerd.io' });
    t.equal(after - before, names.length, `one ExternalWorkload write per workload for the template edit (counted ${after - before})`);
  });

  t.test('linkerd-proxy: the port equals the harness\'s proxy.inboundPort; an impossible one is InvalidHello', async (t) => {
    const ns = await world.namespace(t);
    await world.applyGroup({ name: 'web', namespace: ns, allowedIdentities: [`spiffe://${TRUST_DOMAIN}/vm/*`] });
    const r = await world.replica(t, { replica: 'reg-port' });
    await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: 'vm-1', proxyInboundPort: 15143 });
    const workload = await world.waitForReady(ns, workloadName({ namespace: ns, group: 'web', nodeName: 'vm-1', spiffeId: VM_ID }), 'True');
    t.same(workload.spec.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'linkerd-proxy', port: 15143, protocol: 'TCP' }]);

    const raw = await RawClient.open(t, { pki, spiffeId: `spiffe://${TRUST_DOMAIN}/vm/raw`, address: r.grpcAddress });
    const answer = await raw.stream(RawClient.hello({ group: 'web', namespace: ns, node_name: 'vm-raw', proxy_inbound_port: 70000 })).answer;
    t.match(answer.message, { refused: { reason: 'InvalidHello', message: /proxy_inbound_port 70000 is not a port/ } });
  });

  t.test('no derived server name: a hello without one, to a group without one, is refused', async (t) => {
    const ns = await world.namespace(t);
    await world.applyGroup({ name: 'web', namespace: ns, allowedIdentities: [`spiffe://${TRUST_DOMAIN}/vm/*`], serverName: null });
    const r = await world.replica(t, { replica: 'reg-sni' });
    const raw = await RawClient.open(t, { pki, spiffeId: `spiffe://${TRUST_DOMAIN}/vm/raw`, address: r.grpcAddress });
    const answer = await raw.stream(RawClient.hello({ group: 'web', namespace: ns, node_name: 'vm-raw', server_name: '' })).answer;
    t.match(answer.message, { refused: { reason: 'NoServerName' } });
    t.same(await world.listWorkloads(ns), [], 'no ExternalWorkload with a guessed server name');
  });

  t.test('ExternalGroup status: counts and conditions, kubectl get shows the fleet, no write while nothing changes', async (t) => {
    const ns = await world.namespace(t);
    await world.applyGroup({ name: 'fleet', namespace: ns, allowedIdentities: [`spiffe://${TRUST_DOMAIN}/vm/*`], maxWorkloadsPerIdentity: 3 });
    const r = await world.replica(t, { replica: 'reg-status' });
    const harnesses = [];
    for (const nodeName of ['vm-1', 'vm-2', 'vm-3']) harnesses.push(await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'fleet', namespace: ns, nodeName }));
    harnesses[2]!.readiness.set({ proxy_ready: false, probes: [], reason: 'ProxyNotReady', message: 'down' });
    const group = await waitFor('status 3 workloads, 2 ready', async () => {
      const { body } = await cluster.request('GET', `/apis/meshexpansion.dev/v1alpha1/namespaces/${ns}/externalgroups/fleet`);
      const g = body as { metadata: { generation: number }; status?: { workloads?: number; readyWorkloads?: number; observedGeneration?: number; conditions?: Array<{ type: string; status: string }> } };
      return g.status?.workloads === 3 && g.status.readyWorkloads === 2 ? g : undefined;
    }, 30_000, 200);
    t.equal(group.status!.observedGeneration, group.metadata.generation);
    t.same(group.status!.conditions!.map((c) => `${c.type}=${c.status}`), ['Accepted=True', 'TemplateValid=True', 'ServicePortsMatched=True']);
    const table = await cluster.kubectl(['get', 'externalgroups', '-n', ns]);
    t.match(table.stdout, /^NAME\s+WORKLOADS\s+READY\s+ACCEPTED\s+TEMPLATE\s+PORTS\s+AGE\n/, 'printer columns');
    t.match(table.stdout, /\nfleet\s+3\s+2\s+True\s+True\s+True\s+\S+/);

    await new Promise((resolve) => setTimeout(resolve, 3000));
    const before = await cluster.writeRequests({ group: 'meshexpansion.dev' });
    await new Promise((resolve) => setTimeout(resolve, 15_000));
    t.equal(await cluster.writeRequests({ group: 'meshexpansion.dev' }) - before, 0, 'heartbeats write no ExternalGroup status');

    harnesses[2]!.readiness.set({ proxy_ready: true, probes: [], reason: '', message: '' });
    await waitFor('status 3 ready', async () => {
      const { body } = await cluster.request('GET', `/apis/meshexpansion.dev/v1alpha1/namespaces/${ns}/externalgroups/fleet`);
      return (body as { status?: { readyWorkloads?: number } }).status?.readyWorkloads === 3 ? true : undefined;
    }, 30_000, 200);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    t.equal(await cluster.writeRequests({ group: 'meshexpansion.dev' }) - before, 1, 'one status write for one change');
  });

  t.test('a Service whose targetPort no template port matches raises ServicePortsMatched=False and the metric; fixing it clears both', async (t) => {
    const ns = await world.namespace(t);
    await world.applyGroup({ name: 'web', namespace: ns, allowedIdentities: [`spiffe://${TRUST_DOMAIN}/vm/*`], labels: { app: 'web' }, ports: [{ port: 8080, name: 'http' }] });
    const r = await world.replica(t, { replica: 'reg-svc' });
    const service = (targetPort: number | string) => JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: ns }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort }, { name: 'metrics', port: 9090, targetPort: 9090 }] } });
    await cluster.kubectl(['apply', '-f', '-'], { input: service('http') });
    t.teardown(() => cluster.kubectl(['delete', 'service', 'web', '-n', ns, '--wait=false'], { reject: false }));
    const condition = async (status: string) => waitFor(`ServicePortsMatched=${status}`, async () => {
      const { body } = await cluster.request('GET', `/apis/meshexpansion.dev/v1alpha1/namespaces/${ns}/externalgroups/web`);
      const c = (body as { status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } }).status?.conditions?.find((x) => x.type === 'ServicePortsMatched');
      return c?.status === status ? c : undefined;
    }, 30_000, 200);
    const raised = await condition('False');
    t.equal(raised.reason, 'UnmatchedTargetPort');
    t.match(raised.message, /Service web port metrics \(targetPort 9090\/TCP\) match no port of spec\.template\.ports/);
    t.notMatch(raised.message, /port http/, 'the named targetPort matches');
    const metric = new RegExp(`mesh_registrar_unmatched_service_ports\\{namespace="${ns}",group="web"\\} 1`);
    t.match(await r.metrics(), metric);

    await world.applyGroup({ name: 'web', namespace: ns, allowedIdentities: [`spiffe://${TRUST_DOMAIN}/vm/*`], labels: { app: 'web' }, ports: [{ port: 8080, name: 'http' }, { port: 9090, name: 'metrics' }] });
    t.match((await condition('True')).message, /every targetPort of web matches a template port/);
    t.match(await r.metrics(), new RegExp(`mesh_registrar_unmatched_service_ports\\{namespace="${ns}",group="web"\\} 0`));
  });
});
