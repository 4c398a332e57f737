import t from 'tap';
import { desiredWorkload, identityAllowed, mergeForUpdate, reportedReadiness, statusUpdate, workloadIps, workloadMatches, type Registration } from '../../../src/registrar/desired.ts';
import type { ExternalGroup } from '../../../src/registrar/store.ts';

const group: ExternalGroup = {
  apiVersion: 'meshexpansion.dev/v1alpha1',
  kind: 'ExternalGroup',
  metadata: { name: 'web', namespace: 'shop', uid: 'g-uid' },
  spec: {
    allowedIdentities: ['spiffe://td/vm/web', 'spiffe://td/fleet/*'],
    template: { metadata: { labels: { app: 'web' }, annotations: { team: 'a' } }, ports: [{ port: 8080, name: 'http' }] },
  },
};
const registration: Registration = { namespace: 'shop', name: 'web-vm-1-abc', group: 'web', spiffeId: 'spiffe://td/vm/web', nodeName: 'vm-1', machineId: 'm1', serverName: 'vm-1.example', workloadIps: ['fd00::1', '10.0.0.1', '10.0.0.2', 'fd00::2'], proxyInboundPort: 4143 };

t.test('allowedIdentities: exact, or a prefix ending in /*', async (t) => {
  t.ok(identityAllowed(group, 'spiffe://td/vm/web'));
  t.ok(identityAllowed(group, 'spiffe://td/fleet/a'));
  t.ok(identityAllowed(group, 'spiffe://td/fleet/a/b'));
  t.notOk(identityAllowed(group, 'spiffe://td/fleet'), 'the prefix itself is not under it');
  t.notOk(identityAllowed(group, 'spiffe://td/fleetwood/a'), 'a path segment boundary, not a string prefix');
  t.notOk(identityAllowed(group, 'spiffe://td/vm/web2'));
  t.notOk(identityAllowed(group, 'spiffe://other/vm/web'));
});

t.test('at most one IPv4 and one IPv6, the first of each', async (t) => {
  t.same(workloadIps(registration.workloadIps), [{ ip: '10.0.0.1' }, { ip: 'fd00::1' }]);
  t.same(workloadIps(['not-an-ip']), []);
});

t.test('desired object: owner reference, template labels/annotations/ports, identity, serverName', async (t) => {
  const desired = desiredWorkload(group, registration, 'r1');
  t.same(desired.metadata.ownerReferences, [{ apiVersion: 'meshexpansion.dev/v1alpha1', kind: 'ExternalGroup', name: 'web', uid: 'g-uid', controller: true, blockOwnerDeletion: false }]);
  t.equal(desired.metadata.labels!['app'], 'web');
  t.equal(desired.metadata.annotations!['team'], 'a');
  t.equal(desired.metadata.annotations!['meshexpansion.dev/registrar-replica'], 'r1');
  t.same(desired.spec, { meshTLS: { identity: 'spiffe://td/vm/web', serverName: 'vm-1.example' }, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'linkerd-proxy', port: 4143, protocol: 'TCP' }], workloadIPs: [{ ip: '10.0.0.1' }, { ip: 'fd00::1' }] });
});

t.test('linkerd-proxy: the machine\'s inbound port, listed as a pod\'s proxy container lists it; none when the hello does not say', async (t) => {
  t.same(desiredWorkload(group, { ...registration, proxyInboundPort: 15143 }, 'r1').spec.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'linkerd-proxy', port: 15143, protocol: 'TCP' }]);
  t.same(desiredWorkload(group, { ...registration, proxyInboundPort: 0 }, 'r1').spec.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }], 'a harness from before the field: no linkerd-proxy port (Linkerd assumes 4143)');
  const claiming: ExternalGroup = { ...group, spec: { ...group.spec, template: { ...group.spec.template, ports: [{ port: 9999, name: 'linkerd-proxy' }, { port: 8080, name: 'http' }] } } };
  t.same(desiredWorkload(claiming, registration, 'r1').spec.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'linkerd-proxy', port: 4143, protocol: 'TCP' }], 'the machine says where its proxy listens, not the template');
  const stored = desiredWorkload(group, registration, 'r1');
  t.notOk(workloadMatches(stored, desiredWorkload(group, { ...registration, proxyInboundPort: 4000 }, 'r1')), 'a changed inbound port is written');
});

t.test('compare: equal objects need no write; a new holder or a changed IP does; others\' additions do not', async (t) => {
  const desired = desiredWorkload(group, registration, 'r1');
  const stored = { ...desired, metadata: { ...desired.metadata, uid: 'u', resourceVersion: '5', labels: { ...desired.metadata.labels, extra: 'x' } } };
  t.ok(workloadMatches(stored, desired));
  t.notOk(workloadMatches(stored, desiredWorkload(group, registration, 'r2')));
  t.notOk(workloadMatches(stored, desiredWorkload(group, { ...registration, workloadIps: ['10.0.0.9'] }, 'r1')));
  const merged = mergeForUpdate(stored, desiredWorkload(group, registration, 'r2'));
  t.equal(merged.metadata.labels!['extra'], 'x', 'keeps labels others added');
  t.equal(merged.metadata.resourceVersion, '5', 'the update carries the resourceVersion it read');
});

t.test('owned keys: a key that leaves the template leaves the workload; keys others set stay, also when the template once had the same key', async (t) => {
  const desired = desiredWorkload(group, registration, 'r1');
  t.same(JSON.parse(desired.metadata.annotations!['meshexpansion.dev/template-keys']!), { labels: ['app'], annotations: ['team'] });
  const stored = { ...desired, metadata: { ...desired.metadata, resourceVersion: '5', labels: { ...desired.metadata.labels, tier: 'vm', 'other.io/x': '1' }, annotations: { ...desired.metadata.annotations, 'other.io/y': '2' } } };
  const withTier: ExternalGroup = { ...group, spec: { ...group.spec, template: { ...group.spec.template, metadata: { labels: { app: 'web', tier: 'vm' }, annotations: { team: 'a', 'config.linkerd.io/opaque-ports': '5432' } } } } };
  const before = mergeForUpdate(stored, desiredWorkload(withTier, registration, 'r1'));
  t.same(JSON.parse(before.metadata.annotations!['meshexpansion.dev/template-keys']!), { labels: ['app', 'tier'], annotations: ['config.linkerd.io/opaque-ports', 'team'] });
  t.ok(workloadMatches(before, desiredWorkload(withTier, registration, 'r1')));

  const bare: ExternalGroup = { ...group, spec: { ...group.spec, template: { ...group.spec.template, metadata: { labels: { app: 'web' }, annotations: {} } } } };
  const wanted = desiredWorkload(bare, registration, 'r1');
  t.notOk(workloadMatches(before, wanted), 'a removed template key needs a write');
  const after = mergeForUpdate(before, wanted);
  t.same(after.metadata.labels, { app: 'web', 'meshexpansion.dev/group': 'web', 'other.io/x': '1' }, 'tier is gone, the foreign label stays');
  t.notOk('config.linkerd.io/opaque-ports' in after.metadata.annotations!, 'the removed annotation is gone');
  t.notOk('team' in after.metadata.annotations!);
  t.equal(after.metadata.annotations!['other.io/y'], '2', 'the foreign annotation stays');
  t.ok(workloadMatches(after, wanted), 'then nothing more to write');

  // A workload written before the registrar recorded its keys: it owns nothing, removes nothing.
  const { ['meshexpansion.dev/template-keys']: _, ...unrecorded } = before.metadata.annotations!;
  const legacy = { ...before, metadata: { ...before.metadata, annotations: unrecorded } };
  t.equal(mergeForUpdate(legacy, wanted).metadata.labels!['tier'], 'vm', 'an unrecorded key is not the registrar\'s to remove');
  const garbled = { ...before, metadata: { ...before.metadata, annotations: { ...before.metadata.annotations, 'meshexpansion.dev/template-keys': '{not json' } } };
  t.equal(mergeForUpdate(garbled, wanted).metadata.labels!['tier'], 'vm', 'an unreadable record owns nothing');
});

t.test('status: written only on change; lastTransitionTime moves only when the status flips', async (t) => {
  const object = desiredWorkload(group, registration, 'r1');
  const t0 = new Date('2026-01-01T00:00:00Z');
  const ready = statusUpdate(object, reportedReadiness({ proxy_ready: true, probes: [], reason: '', message: '' }), t0)!;
  t.equal(ready.status!.conditions![0]!.status, 'True');
  t.equal(statusUpdate(ready, reportedReadiness({ proxy_ready: true, probes: [], reason: '', message: '' }), new Date()), undefined, 'same condition: no write');
  const down = statusUpdate(ready, reportedReadiness({ proxy_ready: false, probes: [], reason: 'ProxyNotReady', message: 'down' }), new Date('2026-01-01T00:01:00Z'))!;
  t.same(down.status!.conditions![0], { type: 'Ready', status: 'False', reason: 'ProxyNotReady', message: 'down', lastTransitionTime: '2026-01-01T00:01:00Z' });
  const probe = statusUpdate(down, reportedReadiness({ proxy_ready: true, probes: [{ name: 'http', success: false, message: '503', observed_unix_ms: 0 }], reason: '', message: '' }), new Date('2026-01-01T00:02:00Z'))!;
  t.equal(probe.status!.conditions![0]!.reason, 'ProbeFailed');
  t.equal(probe.status!.conditions![0]!.lastTransitionTime, '2026-01-01T00:01:00Z', 'still False: the transition time stays');
});
