/**
 * The registrar's trust boundary, played by the attacker: a VM holding one valid SVID of the
 * trust domain, speaking the protocol by hand over real mutual TLS (no harness checks in the
 * way) to a real mesh-registrar process under the deploy/kubernetes RBAC, on a real
 * kube-apiserver. An authenticated VM may register itself, and nothing more: not 300
 * workloads, not another machine's name or address, not a field the API server cannot store,
 * not a write per toggle, not a stall of everyone's garbage collection.
 */
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { proxyOnlyState } from '../../../src/protocol/registration.ts';
import { workloadName } from '../../../src/protocol/workload-name.ts';
import { KubeCluster, SKIP_WITHOUT_KUBE } from '../../helpers/kube.ts';
import { makePki, RawClient, readyOf, RegistrarCluster, startHarness, TRUST_DOMAIN, type StreamAnswer } from '../../helpers/registrar.ts';
import { waitFor } from '../../helpers/tmp.ts';

t.setTimeout(900_000);

const ATTACKER = `spiffe://${TRUST_DOMAIN}/vm/sandbox`;
const VM_ID = `spiffe://${TRUST_DOMAIN}/vm/web`;
// Hand-made streams send no heartbeats: the replicas here ask for them every 30 s, so a quiet attacker stream stays up.
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const refusal = (answer: StreamAnswer) => (answer.message && 'refused' in answer.message ? answer.message.refused : undefined);
const acceptedName = (answer: StreamAnswer) => (answer.message && 'accepted' in answer.message ? answer.message.accepted.workload_name : undefined);

t.test('an authenticated VM may register itself, and nothing more', { skip: SKIP_WITHOUT_KUBE }, async (t) => {
  const cluster = await KubeCluster.start(t);
  const pki = await makePki(t);
  const world = new RegistrarCluster(cluster, pki, 'mh-attack');

  t.test('names and count: 300 streams from one identity on one connection make one workload', async (t) => {
    const ns = await world.namespace(t);
    await world.applyGroup({ name: 'sandbox', namespace: ns, allowedIdentities: [ATTACKER] });
    const r = await world.replica(t, { replica: 'reg-count', heartbeatInterval: '30s' });
    const attacker = await RawClient.open(t, { pki, spiffeId: ATTACKER, address: r.grpcAddress });
    const streams = Array.from({ length: 300 }, (_, i) => attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: `vm-${i}`, machine_id: `m-${i}` })));
    const answers = await Promise.all(streams.map((s) => s.answer));
    const accepted = answers.filter(acceptedName);
    t.equal(accepted.length, 1, 'one stream accepted');
    const reasons = new Set(answers.map((a) => refusal(a)?.reason ?? (a.error ? `error ${a.error.code}` : 'accepted')));
    t.same([...reasons].sort(), ['TooManyWorkloads', 'accepted'], 'every other one refused for the count');
    t.match(answers.map(refusal).find(Boolean)?.message, new RegExp(`^${ATTACKER.replace(/[/.]/g, '\\$&')} already holds 1 ExternalWorkload in ExternalGroup ${ns}/sandbox \\(${acceptedName(accepted[0]!)}\\) and the group's spec.maxWorkloadsPerIdentity is 1`));
    await waitFor('the accepted workload written', async () => ((await world.listWorkloads(ns)).length ? true : undefined), 30_000, 100);
    await sleep(2000);
    t.equal((await world.listWorkloads(ns)).length, 1, 'one ExternalWorkload in the namespace');

    // At most limits.streamsPerConnection (8) streams at once on one connection: the rest wait in the client.
    const quiet = await RawClient.open(t, { pki, spiffeId: ATTACKER, address: r.grpcAddress });
    const silent = Array.from({ length: 20 }, () => quiet.stream());
    const open = async () => Number(/^mesh_registrar_streams (\d+)$/m.exec(await r.metrics())?.[1]);
    await waitFor('the registrar to hold the silent streams', async () => ((await open()) >= 9 ? true : undefined), 10_000, 100);
    await sleep(1000);
    t.equal(await open(), 8 + 1, 'eight silent streams on the new connection, plus the accepted one');
    for (const s of silent) s.call.cancel();
    for (const s of streams) s.call.cancel();
  });

  t.test('streams waiting for an answer: at most limits.pendingStreamsPerIdentity per identity', async (t) => {
    const ns = await world.namespace(t);
    await world.applyGroup({ name: 'sandbox', namespace: ns, allowedIdentities: [ATTACKER] });
    const r = await world.replica(t, { replica: 'reg-pending', heartbeatInterval: '30s', extra: { limits: { pendingStreamsPerIdentity: 12 } } });
    // Four connections, eight hello-less streams each: more than the identity may have waiting.
    const clients = await Promise.all(Array.from({ length: 4 }, () => RawClient.open(t, { pki, spiffeId: ATTACKER, address: r.grpcAddress })));
    const silent = clients.flatMap((c) => Array.from({ length: 8 }, () => c.stream()));
    const refused = await waitFor('refusals beyond the cap', async () => {
      const settled = await Promise.all(silent.map((s) => Promise.race([s.answer, sleep(200).then(() => undefined)])));
      const many = settled.filter((a) => a && refusal(a)?.reason === 'TooManyStreams');
      return many.length >= 32 - 12 ? many : undefined;
    }, 20_000, 200);
    t.equal(refused.length, 32 - 12, 'all but twelve refused');
    t.match(refusal(refused[0]!)?.message, /already has 12 streams waiting for an answer on this replica \(limits\.pendingStreamsPerIdentity\)/);
    // The waiting ones do not keep another identity out, and a real hello still gets its answer.
    const web = await RawClient.open(t, { pki, spiffeId: VM_ID, address: r.grpcAddress });
    await world.applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID] });
    const answer = await web.stream(RawClient.hello({ group: 'web', namespace: ns, node_name: 'vm-1' })).answer;
    t.ok(acceptedName(answer), `another identity registers: ${JSON.stringify(answer.message ?? answer.error?.message)}`);
    for (const s of silent) s.call.cancel();
  });

  t.test('takeover: an empty or changed machine id never takes a held name, connected or not, until the holder is gone beyond grace', async (t) => {
    const ns = await world.namespace(t);
    // Two VMs share one identity, as in the docs' spiffe://.../vm/web example.
    await world.applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID], maxWorkloadsPerIdentity: 2 });
    const r = await world.replica(t, { replica: 'reg-takeover', heartbeatInterval: '30s', grace: '4s', ttl: '5m' });
    const victim = await RawClient.open(t, { pki, spiffeId: VM_ID, address: r.grpcAddress });
    const held = victim.stream(RawClient.hello({ group: 'web', namespace: ns, node_name: 'vm-1', machine_id: 'machine-victim', workload_ips: ['192.0.2.11'] }));
    const name = acceptedName(await held.answer)!;
    t.equal(name, workloadName({ namespace: ns, group: 'web', nodeName: 'vm-1', spiffeId: VM_ID }));
    await world.waitForReady(ns, name, 'True');
    let victimClosed = false;
    held.call.on('data', () => (victimClosed = true));
    held.call.on('end', () => (victimClosed = true));

    const attacker = await RawClient.open(t, { pki, spiffeId: VM_ID, address: r.grpcAddress });
    const claim = (machine_id: string) => attacker.stream(RawClient.hello({ group: 'web', namespace: ns, node_name: 'vm-1', machine_id, workload_ips: ['192.0.2.66'] })).answer;
    for (const machine of ['', 'machine-attacker']) {
      const answer = await claim(machine);
      t.equal(refusal(answer)?.reason, 'NameTaken', `machine id ${JSON.stringify(machine)}: refused while the holder is connected`);
      t.match(refusal(answer)?.message, /is held by node vm-1 \(spiffe:\S+, machine machine-vict\), connected since .*takes a name over only once its holder said goodbye or has been without a stream for the grace period/);
    }
    await sleep(1000);
    t.notOk(victimClosed, 'the holder\'s stream was not closed');
    const kept = await world.getWorkload(ns, name);
    t.same(kept?.spec.workloadIPs, [{ ip: '192.0.2.11' }], 'its IP is its own');
    t.equal(readyOf(kept)?.status, 'True');

    // The holder's stream drops (no goodbye): within the grace the name is still its.
    held.call.cancel();
    await sleep(500);
    const within = await claim('');
    t.equal(refusal(within)?.reason, 'NameTaken', 'within the grace: still refused');
    t.match(refusal(within)?.message, /without a stream since/);
    // Beyond it, a machine with another id may take the name over (a re-imaged VM), and its IP goes in.
    const down = await world.waitForReady(ns, name, 'False', 'Disconnected', 20_000);
    t.ok(down, 'the holder went Disconnected after the grace');
    const reimaged = attacker.stream(RawClient.hello({ group: 'web', namespace: ns, node_name: 'vm-1', machine_id: 'machine-reimaged', workload_ips: ['192.0.2.66'] }));
    t.equal(acceptedName(await reimaged.answer), name, 'taken over once the holder is gone beyond the grace');
    await waitFor('the new machine\'s IP', async () => (JSON.stringify((await world.getWorkload(ns, name))?.spec.workloadIPs) === JSON.stringify([{ ip: '192.0.2.66' }]) ? true : undefined), 20_000, 100);

    // A group whose machines have no stable machine id may allow the takeover at once: the holder is told why.
    await world.applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID], maxWorkloadsPerIdentity: 2, nameTakeover: 'Immediate' });
    const replaced = new Promise<string>((resolve) => reimaged.call.on('data', (m) => 'refused' in m && m.refused && resolve(`${m.refused.reason}: ${m.refused.message}`)));
    await waitFor('the group change seen by the registrar', async () => (refusal(await claim('')) === undefined ? true : undefined), 20_000, 500);
    t.match(await replaced, /^Replaced: node vm-1 \(spiffe:\S+\) took the name over \(the group's spec\.nameTakeover is Immediate\)$/, 'the holder learns who took its name and why');
  });

  t.test('squatting: a VM of one group cannot take the name another group\'s VM will need', async (t) => {
    const ns = await world.namespace(t);
    const BILLING = `spiffe://${TRUST_DOMAIN}/vm/billing`;
    await world.applyGroup({ name: 'sandbox', namespace: ns, allowedIdentities: [ATTACKER], allowCustomNames: true });
    await world.applyGroup({ name: 'billing', namespace: ns, allowedIdentities: [BILLING] });
    const r = await world.replica(t, { replica: 'reg-squat', heartbeatInterval: '30s' });
    const billingName = workloadName({ namespace: ns, group: 'billing', nodeName: 'billing-1', spiffeId: BILLING });
    const attacker = await RawClient.open(t, { pki, spiffeId: ATTACKER, address: r.grpcAddress });
    const squat = await attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: 'vm-s', workload_name: billingName })).answer;
    t.equal(refusal(squat)?.reason, 'NameMismatch', 'refused, although the sandbox group allows custom names');
    t.match(refusal(squat)?.message, /custom names in ExternalGroup \S+\/sandbox must start with "sandbox-"/);
    // A name of the sandbox group's own shape is fine; the billing VM then registers as it should.
    t.equal(acceptedName(await attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: 'vm-s', workload_name: 'sandbox-own' })).answer), 'sandbox-own');
    const billing = await startHarness(t, { pki, spiffeId: BILLING, registrarAddress: r.grpcAddress, group: 'billing', namespace: ns, nodeName: 'billing-1' });
    await waitFor('the billing VM registered', () => (billing.component.state().phase === 'Ready' ? true : undefined), 30_000);
    t.equal(billing.component.workloadName(), billingName);
    const workload = await world.waitForReady(ns, billingName, 'True');
    t.equal(workload.spec.meshTLS.identity, BILLING, 'the billing VM\'s name points at the billing VM');
  });

  t.test('size: a 3 MiB field never reaches the registrar\'s code; an oversize field under the message limit is InvalidHello naming it', async (t) => {
    const ns = await world.namespace(t);
    await world.applyGroup({ name: 'sandbox', namespace: ns, allowedIdentities: [ATTACKER] });
    const r = await world.replica(t, { replica: 'reg-size', heartbeatInterval: '30s' });
    const attacker = await RawClient.open(t, { pki, spiffeId: ATTACKER, address: r.grpcAddress });
    const huge = await attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: 'n'.repeat(3 * 1024 * 1024), machine_id: 'm-1' })).answer;
    t.equal(huge.error?.code, grpc.status.RESOURCE_EXHAUSTED, `the 3 MiB hello is refused by gRPC (limits.maxMessageBytes): ${huge.error?.details ?? JSON.stringify(huge.message)}`);
    const long = await attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: 'n'.repeat(10_000), machine_id: 'm-1' })).answer;
    t.equal(refusal(long)?.reason, 'InvalidHello');
    t.equal(refusal(long)?.message, 'node_name is 10000 characters long, more than 253 (workload.nodeName)');
    const versions = await attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: 'vm-1', versions: { harness: 'v'.repeat(5000), proxy: '', spire_agent: '' } })).answer;
    t.equal(refusal(versions)?.message, 'versions.harness is 5000 characters long, more than 64');
    await sleep(1000);
    t.equal((await world.listWorkloads(ns)).length, 0, 'nothing written');
    t.notMatch(r.log(), /write failed; retrying/, 'no write the API server refuses, retried forever');
  });

  t.test('write amplification: 1,000 readiness toggles cost a bounded number of writes, and the final state is written', async (t) => {
    const ns = await world.namespace(t);
    await world.applyGroup({ name: 'sandbox', namespace: ns, allowedIdentities: [ATTACKER] });
    const r = await world.replica(t, { replica: 'reg-toggle', heartbeatInterval: '30s' });
    const attacker = await RawClient.open(t, { pki, spiffeId: ATTACKER, address: r.grpcAddress });
    const stream = attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: 'vm-1' }));
    const name = acceptedName(await stream.answer)!;
    await world.waitForReady(ns, name, 'True');
    await sleep(2000);
    const before = await cluster.writeRequests({ group: 'workload.linkerd.io' });
    const started = Date.now();
    for (let i = 0; i < 1000; i += 1) {
      stream.send({ state_change: { state: i % 2 === 0 ? proxyOnlyState(false, `toggle ${i}`) : proxyOnlyState(true) } });
      if (i % 50 === 0) await sleep(10);
    }
    stream.send({ state_change: { state: proxyOnlyState(false, 'the final state') } });
    const final = await world.waitForReady(ns, name, 'False', 'ProxyNotReady', 30_000).then(() => waitFor('the final message', async () => {
      const w = await world.getWorkload(ns, name);
      return readyOf(w)?.message === 'the final state' ? w : undefined;
    }, 30_000, 100));
    const elapsedS = (Date.now() - started) / 1000;
    await sleep(3000);
    t.equal(readyOf(await world.getWorkload(ns, name))?.message, 'the final state', 'the last state won and stayed');
    const writes = (await cluster.writeRequests({ group: 'workload.linkerd.io' })) - before;
    // limits.writeBurst (3) at once, then one a second; one more for the second the toggles began in.
    const bound = 3 + Math.ceil(elapsedS) + 1;
    t.ok(writes <= bound, `${writes} ExternalWorkload writes for 1,001 state changes over ${elapsedS.toFixed(1)} s (at most 3 at once, then one a second: ${bound})`);
    t.ok(writes >= 1, 'the final state was written');
    t.equal(readyOf(final)?.status, 'False');
  });

  t.test('foreign IP and server name: refused with their own reasons, the harness shows them', async (t) => {
    const ns = await world.namespace(t);
    // No spec.allowedIPs: only the address the VM connects from (loopback here) may be announced.
    await world.applyGroup({ name: 'sandbox', namespace: ns, allowedIdentities: [ATTACKER], allowedIPs: [] });
    const r = await world.replica(t, { replica: 'reg-ip', heartbeatInterval: '30s' });
    const attacker = await RawClient.open(t, { pki, spiffeId: ATTACKER, address: r.grpcAddress });
    const service = await attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: 'vm-1', workload_ips: ['10.96.0.1'] })).answer;
    t.equal(refusal(service)?.reason, 'IPNotAllowed', 'the kubernetes Service IP');
    t.equal(refusal(service)?.message, `workload IP 10.96.0.1 is neither the address this machine connects from (127.0.0.1) nor inside ExternalGroup ${ns}/sandbox spec.allowedIPs []: set workload.ips on the machine to the address the registrar sees, or add a CIDR covering 10.96.0.1 to the group's spec.allowedIPs (needed when the machines reach the registrar through NAT)`);
    const sni = await attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: 'vm-1', workload_ips: ['127.0.0.1'], server_name: 'kubernetes.default.svc' })).answer;
    t.equal(refusal(sni)?.reason, 'ServerNameMismatch');
    t.match(refusal(sni)?.message, /presents the server name "kubernetes\.default\.svc" \(identity\.serverName\), but ExternalGroup \S+\/sandbox spec\.template\.serverName is "sandbox\.\S+\.vm\.example": set identity\.serverName to sandbox\./);
    t.ok(acceptedName(await attacker.stream(RawClient.hello({ group: 'sandbox', namespace: ns, node_name: 'vm-1', workload_ips: ['127.0.0.1'] })).answer), 'its own address is accepted');
    await waitFor('the workload', async () => ((await world.listWorkloads(ns)).length === 1 ? true : undefined), 20_000, 100);
    t.same((await world.listWorkloads(ns))[0]?.spec.workloadIPs, [{ ip: '127.0.0.1' }]);

    // A harness configured with a foreign IP shows the reason in /status, for `check` to explain.
    const VM2 = `spiffe://${TRUST_DOMAIN}/vm/other`;
    await world.applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM2], allowedIPs: [] });
    const harness = await startHarness(t, { pki, spiffeId: VM2, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: 'vm-2', ips: ['10.96.0.1'] });
    const state = await waitFor('the harness refused', () => (harness.component.state().detail?.['refusal'] ? harness.component.state() : undefined), 30_000);
    t.match(state.detail?.['refusal'], { reason: 'IPNotAllowed', message: /^workload IP 10\.96\.0\.1 is neither/ });
    t.match(state.message, /refused by the registrar \(IPNotAllowed\)/);
  });

  t.test('GC stall: junk that never was Ready raises no storm, and GC pauses at most stormHold', async (t) => {
    const ns = await world.namespace(t);
    const JUNK = `spiffe://${TRUST_DOMAIN}/junk`;
    await world.applyGroup({ name: 'web', namespace: ns, allowedIdentities: [VM_ID, `${JUNK}/*`], maxWorkloadsPerIdentity: 5 });
    const r = await world.replica(t, { replica: 'reg-gc', heartbeatInterval: '30s', grace: '2s', ttl: '5s', extra: { stormFraction: 0.2, stormHold: '10s', gcPauseFraction: 0.5, deleteRate: 1 } });
    const real: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      await startHarness(t, { pki, spiffeId: VM_ID, registrarAddress: r.grpcAddress, group: 'web', namespace: ns, nodeName: `vm-${i}` });
      real.push(workloadName({ namespace: ns, group: 'web', nodeName: `vm-${i}`, spiffeId: VM_ID }));
    }
    // 40 junk workloads, each from an identity of its own under an allowed pattern, never Ready.
    const junk = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      const client = await RawClient.open(t, { pki, spiffeId: `${JUNK}/${i}`, address: r.grpcAddress });
      const stream = client.stream(RawClient.hello({ group: 'web', namespace: ns, node_name: `junk-${i}`, state: proxyOnlyState(false, 'junk') }));
      return { stream, name: acceptedName(await stream.answer)! };
    }));
    t.equal(junk.filter((j) => j.name).length, 40, '40 junk workloads accepted');
    await waitFor('45 workloads', async () => ((await world.listWorkloads(ns)).length === 45 ? true : undefined), 60_000, 200);
    for (const name of real) await world.waitForReady(ns, name, 'True');

    for (const j of junk) j.stream.call.cancel();
    const disconnectedAt = Date.now();
    await waitFor('GC to pause', () => (/GC paused: \d+ of \d+ ExternalWorkloads look orphaned/.test(r.log()) ? true : undefined), 60_000, 200);
    const pausedAt = Date.now();
    await waitFor('GC to resume after stormHold', () => (/GC resumed: it paused for stormHold \(10s\)/.test(r.log()) ? true : undefined), 30_000, 200);
    t.ok(Date.now() - pausedAt <= 10_000 + 5000, `resumed ${((Date.now() - pausedAt) / 1000).toFixed(1)} s after the pause was seen (stormHold 10 s)`);
    const left = await waitFor('every junk workload deleted', async () => {
      const names = new Set((await world.listWorkloads(ns)).map((w) => w.metadata.name));
      return junk.some((j) => names.has(j.name)) ? undefined : names;
    }, 120_000, 500);
    t.same([...left].sort(), [...real].sort(), 'the five real workloads stay');
    for (const name of real) t.equal(readyOf(await world.getWorkload(ns, name))?.status, 'True', `${name} still Ready`);
    t.notMatch(r.log(), /disconnect storm/, 'junk that was never Ready raised no disconnect storm');
    t.ok(Date.now() - disconnectedAt > 5000, 'nothing deleted before the TTL');
  });
});
