/**
 * mesh-registrar against a real kube-apiserver, running under the RBAC of
 * deploy/kubernetes (not cluster-admin): replicas are real mesh-registrar processes
 * (dist/), harnesses are real registration components over real mutual TLS with SVIDs
 * from the dev CA. Every object the registrar writes is validated by the API server
 * against the real Linkerd CRD.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSync } from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { DevCa } from '../../../src/dev/ca.ts';
import { PROTO_FILE } from '../../../src/protocol/registration.ts';
import { workloadName } from '../../../src/protocol/workload-name.ts';
import { KubeCluster, SKIP_WITHOUT_KUBE } from '../../helpers/kube.ts';
import { FirstLiveRelay, groupServerName, makePki, readyOf, RegistrarCluster, startHarness, startHarnessProcess, TRUST_DOMAIN, type GroupSpec, type ReplicaOptions } from '../../helpers/registrar.ts';
import { REPO_ROOT } from '../../helpers/specs.ts';
import { tempDir, waitFor } from '../../helpers/tmp.ts';

// Starting a cluster and waiting out grace periods and TTLs takes longer than tap's default per file.
t.setTimeout(900_000);

const VM_ID = `spiffe://${TRUST_DOMAIN}/vm/web`;

t.test('mesh-registrar on a real kube-apiserver', { skip: SKIP_WITHOUT_KUBE }, async (t) => {
  const cluster = await KubeCluster.start(t);
  const pki = await makePki(t);
  const world = new RegistrarCluster(cluster, pki, 'mh-reg');
  const namespace = (t: Test) => world.namespace(t);
  const applyGroup = (group: GroupSpec) => world.applyGroup(group);
  const getWorkload = (ns: string, name: string) => world.getWorkload(ns, name);
  const ready = readyOf;
  const waitForReady = world.waitForReady.bind(world);
  const replica = (t: Test, options: Omit<ReplicaOptions, 'pki' | 'kubeconfig'>) => world.replica(t, options);

  t.test('a harness registers: the ExternalWorkload appears with its name, identity, IPs, ports and labels; Ready follows the proxy', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'web', namespace: ns, allowedIdentities: [`spiffe://${TRUST_DOMAIN}/vm/*`], labels: { app: 'web', tier: 'backend' }, ports: [{ port: 8080, name: 'http' }] });
    const r = await replica(t, { replica: 'reg-a' });
    const { component, readiness } = await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: 'vm-1', ips: ['192.0.2.10', 'fd00::10'] });
    const name = workloadName({ namespace: ns, group: 'web', nodeName: 'vm-1', spiffeId: VM_ID });
    const workload = await waitForReady(ns, name, 'True');
    t.equal(component.workloadName(), name, 'the harness and the registrar agree on the name without asking each other');
    t.same(workload.spec.meshTLS, { identity: VM_ID, serverName: groupServerName('web', ns) }, 'the server name is the group\'s');
    t.same(workload.spec.workloadIPs, [{ ip: '192.0.2.10' }, { ip: 'fd00::10' }]);
    t.same(workload.spec.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
    t.match(workload.metadata.labels, { app: 'web', tier: 'backend' });
    t.equal(workload.metadata.ownerReferences?.[0]?.kind, 'ExternalGroup');
    t.equal(workload.metadata.annotations?.['meshexpansion.dev/registrar-replica'], 'reg-a');
    t.equal(component.state().phase, 'Ready');

    readiness.set({ proxy_ready: false, probes: [], reason: 'ProxyNotReady', message: 'the proxy is not ready (CrashLoop)' });
    const down = await waitForReady(ns, name, 'False', 'ProxyNotReady');
    t.equal(ready(down)?.message, 'the proxy is not ready (CrashLoop)');
    readiness.set({ proxy_ready: true, probes: [], reason: '', message: '' });
    await waitForReady(ns, name, 'True');

    readiness.set({ proxy_ready: true, probes: [{ name: 'http', success: false, message: 'HTTP 503', observed_unix_ms: Date.now() }], reason: '', message: '' });
    t.match(ready(await waitForReady(ns, name, 'False', 'ProbeFailed'))?.message, /http.*503/);
    readiness.set({ proxy_ready: true, probes: [], reason: '', message: '' });
    await waitForReady(ns, name, 'True');
  });

  t.test('steady state: a connected, heartbeating fleet costs zero ExternalWorkload writes for a minute', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'fleet', namespace: ns, allowedIdentities: [`spiffe://${TRUST_DOMAIN}/vm/*`], maxWorkloadsPerIdentity: 3 });
    const r = await replica(t, { replica: 'reg-steady', heartbeatInterval: '1s' });
    const names: string[] = [];
    for (const node of ['vm-1', 'vm-2', 'vm-3']) {
      await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'fleet', namespace: ns, nodeName: node });
      names.push(workloadName({ namespace: ns, group: 'fleet', nodeName: node, spiffeId: VM_ID }));
    }
    for (const name of names) await waitForReady(ns, name, 'True');
    // Let the watch deliver the last writes before counting.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const before = await cluster.writeRequests({ group: 'workload.linkerd.io' });
    await new Promise((resolve) => setTimeout(resolve, 60_000));
    const after = await cluster.writeRequests({ group: 'workload.linkerd.io' });
    t.equal(after - before, 0, `apiserver_request_total counted ${after - before} ExternalWorkload writes in a minute of heartbeats`);
    for (const name of names) t.equal(ready(await getWorkload(ns, name))?.status, 'True', `${name} still Ready`);
  });

  t.test('cluster facts follow linkerd-config: accepted carries them, a change reaches the harness as an update, invalid falls back to the config with a logged reason', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'facts', namespace: ns, allowedIdentities: [VM_ID] });
    const configMap = (values: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'linkerd-config', namespace: 'linkerd' }, data: { values } });
    t.teardown(() => cluster.kubectl(['delete', 'configmap', 'linkerd-config', '-n', 'linkerd', '--ignore-not-found']));
    // Linkerd's own shape: clusterNetworks one comma-separated string, the policy under proxy.
    await cluster.kubectl(['apply', '-f', '-'], { input: configMap('clusterDomain: cluster.local\nclusterNetworks: "10.42.0.0/16, fd00::/8"\nproxy:\n  defaultInboundPolicy: cluster-authenticated\n  logLevel: warn\n') });
    const r = await replica(t, { replica: 'reg-facts' });
    const { component } = await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'facts', namespace: ns, nodeName: 'vm-facts' });
    const proxyIs = (policy: string, networks: string[]) => () => {
      const proxy = component.settings()?.proxy;
      return proxy?.defaultInboundPolicy === policy && JSON.stringify(proxy.clusterNetworks) === JSON.stringify(networks) ? proxy : undefined;
    };
    await waitFor('accepted settings from linkerd-config', proxyIs('cluster-authenticated', ['10.42.0.0/16', 'fd00::/8']), 30_000, 100);

    await cluster.kubectl(['apply', '-f', '-'], { input: configMap('clusterNetworks: "10.43.0.0/16"\nproxy:\n  defaultInboundPolicy: deny\n') });
    await waitFor('update after the ConfigMap changed', proxyIs('deny', ['10.43.0.0/16']), 30_000, 100);

    // Untrusted input: an invalid CIDR is not passed on; the registrar's configured values apply.
    const fallback = ['10.0.0.0/8', '100.64.0.0/10', '172.16.0.0/12', '192.168.0.0/16', 'fd00::/8'];
    await cluster.kubectl(['apply', '-f', '-'], { input: configMap('clusterNetworks: "10.43.0.0/33"\nproxy:\n  defaultInboundPolicy: deny\n') });
    await waitFor('fallback after an invalid ConfigMap', proxyIs('all-unauthenticated', fallback), 30_000, 100);
    t.match(r.log(), /cluster facts from the registrar config: linkerd-config clusterNetworks: \\"10\.43\.0\.0\/33\\" is not a CIDR/, 'the reason is logged');

    await cluster.kubectl(['apply', '-f', '-'], { input: configMap('clusterNetworks: "10.44.0.0/16"\nproxy:\n  defaultInboundPolicy: audit\n') });
    await waitFor('linkerd-config again once valid', proxyIs('audit', ['10.44.0.0/16']), 30_000, 100);
    await cluster.kubectl(['delete', 'configmap', 'linkerd-config', '-n', 'linkerd']);
    await waitFor('fallback once linkerd-config is deleted', proxyIs('all-unauthenticated', fallback), 30_000, 100);
    t.match(r.log(), /cluster facts from the registrar config: no ConfigMap linkerd-config/);
  });

  t.test('refusals: identity not allowed (reason in the harness status), another trust domain fails the handshake, a taken name', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID], maxWorkloadsPerIdentity: 2 });
    const r = await replica(t, { replica: 'reg-refuse' });

    const stranger = await startHarness(t, { pki, spiffeId: `spiffe://${TRUST_DOMAIN}/vm/intruder`, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: 'vm-x' });
    const refused = await waitFor('the stranger refused', () => (stranger.component.state().lastError ? stranger.component.state() : undefined), 30_000);
    t.equal(refused.phase, 'Degraded');
    t.match(refused.message, /refused by the registrar \(NotAllowed\)/);
    t.match(refused.lastError, /intruder is not in ExternalGroup .*allowedIdentities/);
    t.match(r.log(), /refused: spiffe:\/\/root\.linkerd\.cluster\.local\/vm\/intruder is not in ExternalGroup/, 'the refusal is logged by the registrar');

    const otherCa = await DevCa.create({ trustDomain: 'other.example' });
    const foreignSvid = await otherCa.issueSvid({ spiffeId: 'spiffe://other.example/vm/web', ttlMs: 3_600_000 });
    const foreign = await startHarness(t, { pki, spiffeId: 'spiffe://other.example/vm/web', svid: foreignSvid, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: 'vm-f' });
    const failed = await waitFor('the foreign harness fails', () => (foreign.component.state().lastError ? foreign.component.state() : undefined), 30_000);
    t.equal(failed.phase, 'Degraded');
    t.notMatch(failed.message, /refused by the registrar/, 'not a refusal: the TLS handshake failed before any message');
    t.notMatch(r.log(), /other\.example/, 'the registrar never saw a stream from the other trust domain');

    const first = await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: 'vm-1', machineId: 'machine-one' });
    await waitFor('first registered', () => (first.component.state().phase === 'Ready' ? true : undefined), 30_000);
    const second = await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: 'vm-1', machineId: 'machine-two' });
    const taken = await waitFor('second refused', () => (second.component.state().lastError ? second.component.state() : undefined), 30_000);
    t.match(taken.message, /NameTaken/);
    t.match(taken.lastError, /held by node vm-1 .*machine machine-one/, 'the reason names the first machine');
    t.equal(first.component.state().phase, 'Ready', 'the first machine keeps its registration');

    // The operator fixes the second machine's node name and reloads: it registers at once,
    // instead of sitting out the rest of the registrar's retry-after (30 s for NameTaken).
    t.match(taken.detail?.['refusal'], { reason: 'NameTaken', retryAfterSeconds: 30 });
    const fixed = { ...second.config, workload: { ...second.config.workload, nodeName: 'vm-2' } };
    await (await second.component.prepare(fixed)).commit();
    const registered = await waitFor('second registered after the reload', () => (second.component.state().phase === 'Ready' ? second.component.state() : undefined), 15_000);
    t.match(registered.message, /registered as web-vm-2-/);
    t.equal(registered.detail?.['refusal'], undefined, 'the refusal is gone from status');
  });

  t.test('clean stop: goodbye makes the workload Ready=False at once, long before the grace period', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID] });
    const r = await replica(t, { replica: 'reg-bye', grace: '5m', ttl: '10m' });
    const { component } = await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: 'vm-1' });
    const name = workloadName({ namespace: ns, group: 'web', nodeName: 'vm-1', spiffeId: VM_ID });
    await waitForReady(ns, name, 'True');
    await component.stop();
    await waitForReady(ns, name, 'False', 'Draining', 20_000);
  });

  t.test('harness SIGKILL: Ready stays through the grace, then Ready=False (Disconnected), deleted after the TTL', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID] });
    const r = await replica(t, { replica: 'reg-kill', grace: '3s', ttl: '8s', heartbeatInterval: '1s' });
    const harness = await startHarnessProcess(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: 'vm-1' });
    const name = workloadName({ namespace: ns, group: 'web', nodeName: 'vm-1', spiffeId: VM_ID });
    await waitForReady(ns, name, 'True');
    harness.kill('SIGKILL');
    const killedAt = Date.now();
    const down = await waitForReady(ns, name, 'False', 'Disconnected');
    t.ok(Date.now() - killedAt >= 3000, 'not before the grace period ended');
    t.match(ready(down)?.message, /no stream from the harness/);
    await waitFor(`${name} deleted`, async () => ((await getWorkload(ns, name)) ? undefined : true), 30_000, 200);
    t.ok(Date.now() - killedAt >= 8000, 'not before the TTL');
    // The registrar logs after the API answered the delete; the test may see the 404 first.
    t.ok(await waitFor('the registrar logged the delete', () => (/deleted ExternalWorkload/.test(r.log()) ? true : undefined), 10_000), 'the registrar deleted it');
  });

  t.test('replica killed: the harness reconnects to the other replica within the grace, and Ready never flaps', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID] });
    const r1 = await replica(t, { replica: 'reg-one', grace: '10s', ttl: '5m' });
    const r2 = await replica(t, { replica: 'reg-two', grace: '10s', ttl: '5m' });
    const relay = await FirstLiveRelay.start(t, () => [r1.grpcAddress, r2.grpcAddress]);
    const { component } = await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: relay.address, group: 'web', namespace: ns, nodeName: 'vm-1' });
    const name = workloadName({ namespace: ns, group: 'web', nodeName: 'vm-1', spiffeId: VM_ID });
    const before = await waitForReady(ns, name, 'True');
    t.equal(before.metadata.annotations?.['meshexpansion.dev/registrar-replica'], 'reg-one');

    const seen: string[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const condition = ready(await getWorkload(ns, name));
        seen.push(condition?.status ?? 'absent');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    await r1.kill();
    const after = await waitFor('reg-two holds the workload', async () => {
      const workload = await getWorkload(ns, name);
      return workload?.metadata.annotations?.['meshexpansion.dev/registrar-replica'] === 'reg-two' ? workload : undefined;
    }, 10_000, 100);
    // Past the dead replica's grace period too: nobody may mark it NotReady later.
    await new Promise((resolve) => setTimeout(resolve, 12_000));
    watching = false;
    await watcher;
    t.equal(ready(after)?.status, 'True');
    t.same([...new Set(seen)], ['True'], `Ready was True in all ${seen.length} observations`);
    t.equal(component.state().phase, 'Ready');
    t.match(component.state().message, /reg-two/);
  });

  t.test('disconnect storm: when most streams drop at once, Ready holds beyond the grace for the reconnect, for at most stormHold', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID], maxWorkloadsPerIdentity: 12 });
    const r = await replica(t, { replica: 'reg-storm', grace: '2s', ttl: '5m', heartbeatInterval: '1s', extra: { stormFraction: 0.5, stormHold: '20s' } });
    let reachable = true;
    const relay = await FirstLiveRelay.start(t, () => (reachable ? [r.grpcAddress] : []));
    const fleet = 12;
    const names: string[] = [];
    for (let i = 0; i < fleet; i += 1) {
      await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: relay.address, group: 'web', namespace: ns, nodeName: `vm-${i}` });
      names.push(workloadName({ namespace: ns, group: 'web', nodeName: `vm-${i}`, spiffeId: VM_ID }));
    }
    for (const name of names) await waitForReady(ns, name, 'True');
    // Only workloads older than the storm window (grace + stormHold) count: a fleet made for the occasion cannot raise a storm.
    await new Promise((resolve) => setTimeout(resolve, 23_000));
    const statuses = async () => Promise.all(names.map(async (name) => ready(await getWorkload(ns, name))?.status ?? 'absent'));

    // A partition: every stream drops, no goodbye, and nobody can reconnect for a while.
    reachable = false;
    relay.cut();
    const cutAt = Date.now();
    await waitFor('the registrar to call it a storm', () => (/disconnect storm: 12 of 12 workloads/.test(r.log()) ? true : undefined), 10_000, 100);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, cutAt + 6000 - Date.now())));
    t.same(new Set(await statuses()), new Set(['True']), 'three times the grace later, every workload is still Ready');

    // The partition heals: everyone reconnects, and nobody flapped.
    reachable = true;
    await waitFor('all reconnected', async () => ((await statuses()).every((s) => s === 'True') && /disconnect storm over/.test(r.log()) ? true : undefined), 30_000, 200);
    t.notMatch(r.log(), /"msg":"Ready=False/, 'no workload was ever written NotReady');

    // A partition that lasts: the hold is bounded, they go NotReady after grace + stormHold.
    await new Promise((resolve) => setTimeout(resolve, 3000)); // the storm window of the first cut passes
    reachable = false;
    relay.cut();
    const secondCut = Date.now();
    const down = await waitForReady(ns, names[0]!, 'False', 'Disconnected', 60_000);
    t.ok(Date.now() - secondCut >= 20_000, 'not before grace + stormHold');
    t.match(ready(down)?.message, /no stream from the harness/);
  });

  t.test('replica and VM die together: Ready=False after the Lease expires plus the grace, deleted after the TTL', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID] });
    const timing = { grace: '2s', ttl: '10s', leaseDuration: '4s' };
    const r1 = await replica(t, { replica: 'reg-doomed', ...timing });
    const r2 = await replica(t, { replica: 'reg-survivor', ...timing });
    const relay = await FirstLiveRelay.start(t, () => [r1.grpcAddress, r2.grpcAddress]);
    const harness = await startHarnessProcess(t, { pki, spiffeId: VM_ID, registrarAddress: relay.address, group: 'web', namespace: ns, nodeName: 'vm-1' });
    const name = workloadName({ namespace: ns, group: 'web', nodeName: 'vm-1', spiffeId: VM_ID });
    const workload = await waitForReady(ns, name, 'True');
    t.equal(workload.metadata.annotations?.['meshexpansion.dev/registrar-replica'], 'reg-doomed');
    harness.kill('SIGKILL');
    await r1.kill();
    const diedAt = Date.now();
    const down = await waitForReady(ns, name, 'False', 'Disconnected', 40_000);
    // The Lease was renewed at most leaseDuration/3 before the kill: it lapses at least 2/3 of it later.
    t.ok(Date.now() - diedAt >= 2000 + 2000, 'not before the Lease lapsed and the grace passed');
    t.match(ready(down)?.message, /no stream from the harness/);
    await waitFor(`${name} deleted by the surviving replica`, async () => ((await getWorkload(ns, name)) ? undefined : true), 40_000, 200);
    t.ok(await waitFor('the survivor logged the delete', () => (/deleted ExternalWorkload/.test(r2.log()) ? true : undefined), 10_000), 'the surviving replica deleted it');
  });

  t.test('protocol compatibility: a harness from before later fields, and one newer than the registrar, both register', async (t) => {
    const ns = await namespace(t);
    await applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID], maxWorkloadsPerIdentity: 2 });
    const r = await replica(t, { replica: 'reg-compat' });
    const svid = await pki.svid(VM_ID);
    const credentials = grpc.credentials.createSsl(Buffer.from(pki.anchorsPem), Buffer.from(svid.keyPem), Buffer.from(svid.chain.join('')), { checkServerIdentity: () => undefined });

    async function connect(protoFile: string, hello: Record<string, unknown>, extra: Array<Record<string, unknown>> = []): Promise<Record<string, unknown>> {
      const definition = loadSync(protoFile, { keepCase: true, defaults: true, oneofs: true, longs: String });
      const Service = (grpc.loadPackageDefinition(definition) as any).meshexpansion.registration.v1.Registration as grpc.ServiceClientConstructor;
      const client = new Service(r.grpcAddress, credentials, { 'grpc.ssl_target_name_override': 'mesh-registrar' });
      t.teardown(() => client.close());
      const call = (client as any).Connect() as grpc.ClientDuplexStream<unknown, Record<string, unknown>>;
      call.on('error', () => undefined);
      const first = new Promise<Record<string, unknown>>((resolve) => call.once('data', resolve));
      call.write({ hello });
      for (const message of extra) call.write(message);
      const answer = await first;
      call.end();
      return answer;
    }

    // Version 0: Hello as it was before workload_name, state, server_name and machine_id existed.
    const dir = tempDir(t, 'mh-registrar-proto-');
    const oldProto = join(dir, 'old.proto');
    writeFileSync(oldProto, `syntax = "proto3";
package meshexpansion.registration.v1;
service Registration { rpc Connect(stream HarnessMessage) returns (stream RegistrarMessage); }
message HarnessMessage { oneof message { Hello hello = 1; } }
message Hello { uint32 protocol_version = 1; string group = 2; string namespace = 3; string node_name = 4; repeated string workload_ips = 5; }
message RegistrarMessage { oneof message { Accepted accepted = 1; Refused refused = 2; } }
message Accepted { uint32 protocol_version = 1; string workload_name = 2; uint32 heartbeat_interval_seconds = 3; }
message Refused { string reason = 1; string message = 2; }
`);
    const old = await connect(oldProto, { protocol_version: 0, group: 'web', namespace: ns, node_name: 'vm-old', workload_ips: ['192.0.2.30'] });
    t.equal(old['message'], 'accepted', `an old harness is accepted: ${JSON.stringify(old)}`);
    t.equal((old['accepted'] as { workload_name: string }).workload_name, workloadName({ namespace: ns, group: 'web', nodeName: 'vm-old', spiffeId: VM_ID }), 'the registrar derives the name the old harness could not send');

    // A newer harness: a field and a message kind this registrar does not know.
    const current = readFileSync(join(REPO_ROOT, PROTO_FILE), 'utf8');
    const newer = current
      .replace('  string machine_id = 10;\n}', '  string machine_id = 10;\n  string future_field = 99;\n}')
      .replace('    Goodbye goodbye = 4;\n', '    Goodbye goodbye = 4;\n    Telemetry telemetry = 50;\n')
      .concat('\nmessage Telemetry { string text = 1; }\n');
    t.not(newer, current);
    writeFileSync(join(dir, 'newer.proto'), newer);
    const answer = await connect(join(dir, 'newer.proto'), { protocol_version: 2, group: 'web', namespace: ns, node_name: 'vm-new', workload_ips: ['192.0.2.31'], future_field: 'x', server_name: groupServerName('web', ns), machine_id: 'm-new' }, [{ telemetry: { text: 'hello from the future' } }]);
    t.equal(answer['message'], 'accepted', `a newer harness is accepted: ${JSON.stringify(answer)}`);
    t.equal((answer['accepted'] as { protocol_version: number }).protocol_version, 1, 'the registrar says which version it speaks');
  });
  t.test('rollout: a replica that stops releases its Lease, a crashed one lapses, and the new replicas delete both; none is left', async (t) => {
    const timing = { grace: '2s', ttl: '4s', leaseDuration: '3s' };
    type LeaseObject = { metadata: { name: string }; spec: { leaseDurationSeconds?: number; renewTime?: string } };
    const leases = async (): Promise<LeaseObject[]> => {
      const { status, body } = await cluster.request('GET', '/apis/coordination.k8s.io/v1/namespaces/mesh-expansion/leases');
      if (status !== 200) throw new Error(`GET leases: ${status}`);
      return (body as { items: LeaseObject[] }).items;
    };
    const names = async () => (await leases()).map((l) => l.metadata.name).sort();

    const oldA = await replica(t, { replica: 'roll-old-a', ...timing });
    const oldB = await replica(t, { replica: 'roll-old-b', ...timing });
    t.ok((await names()).includes('mesh-registrar-roll-old-a') && (await names()).includes('mesh-registrar-roll-old-b'), 'each replica has its Lease');

    // The rollout: one old replica stops cleanly (SIGTERM, as Kubernetes stops a pod), the other dies.
    t.equal(await oldA.terminate(), 0, 'a clean stop exits 0');
    const released = (await leases()).find((l) => l.metadata.name === 'mesh-registrar-roll-old-a');
    t.equal(released?.spec.leaseDurationSeconds, 1, 'the stopped replica released its Lease: it lapses at once');
    t.match(oldA.log(), /released the replica Lease/);
    await oldB.kill();
    const newC = await replica(t, { replica: 'roll-new-c', ...timing });
    const newD = await replica(t, { replica: 'roll-new-d', ...timing });

    // Lapsed (at most 3 s) plus grace and TTL (6 s), then the next renewal (every second).
    const left = await waitFor('only the new replicas\' Leases', async () => {
      const now = await names();
      return now.length === 2 && now[0] === 'mesh-registrar-roll-new-c' && now[1] === 'mesh-registrar-roll-new-d' ? now : undefined;
    }, 60_000, 250);
    t.same(left, ['mesh-registrar-roll-new-c', 'mesh-registrar-roll-new-d'], 'no Lease of a replica that is gone is left');
    t.match(`${newC.log()}${newD.log()}`, /deleted the Lease of a replica that is gone/);
  });
});
