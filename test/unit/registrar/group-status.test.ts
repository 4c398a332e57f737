import t from 'tap';
import { resolvedProbes } from '../../../src/registrar/desired.ts';
import { countByGroup, desiredGroupStatus, sameGroupStatus, selectsGroup, templateProblems, unmatchedServicePorts } from '../../../src/registrar/group-status.ts';
import type { ExternalGroup, ExternalWorkload, Service } from '../../../src/registrar/store.ts';

const group = (template: ExternalGroup['spec']['template'] = { metadata: { labels: { app: 'web' } }, ports: [{ port: 8080, name: 'http' }, { port: 5432, name: 'pg' }] }, extra: Partial<ExternalGroup['spec']> = {}): ExternalGroup => ({
  apiVersion: 'meshexpansion.dev/v1alpha1',
  kind: 'ExternalGroup',
  metadata: { name: 'web', namespace: 'shop', uid: 'u', generation: 3 },
  spec: { allowedIdentities: ['spiffe://td/vm/*'], template, ...extra },
});
const service = (selector: Record<string, string> | undefined, ports: NonNullable<Service['spec']>['ports']): Service => ({ metadata: { name: 'web', namespace: 'shop' }, spec: { ...(selector ? { selector } : {}), ports } });
const workload = (name: string, group: string, ready: 'True' | 'False' | undefined, namespace = 'shop'): ExternalWorkload => ({
  apiVersion: 'workload.linkerd.io/v1beta1',
  kind: 'ExternalWorkload',
  metadata: { name, namespace, labels: { 'meshexpansion.dev/group': group } },
  spec: { meshTLS: { identity: 'spiffe://td/vm/a', serverName: 'a.example' } },
  ...(ready ? { status: { conditions: [{ type: 'Ready', status: ready }] } } : {}),
});

t.test('a Service selects the group when its selector is a subset of the workloads\' labels', async (t) => {
  t.ok(selectsGroup(service({ app: 'web' }, []), group()));
  t.ok(selectsGroup(service({ 'meshexpansion.dev/group': 'web' }, []), group()), 'the registrar\'s own group label counts');
  t.notOk(selectsGroup(service({ app: 'web', tier: 'x' }, []), group()));
  t.notOk(selectsGroup(service(undefined, []), group()), 'no selector: no managed endpoints');
  t.notOk(selectsGroup(service({}, []), group()));
});

t.test('targetPort matches a template port by name or number, with the same protocol, as Linkerd matches it', async (t) => {
  const ports = group().spec.template.ports!;
  t.same(unmatchedServicePorts(service({ app: 'web' }, [{ port: 80, targetPort: 'http' }, { port: 5432 }, { port: 81, targetPort: 8080 }, { port: 82, targetPort: '8080' }]), ports), []);
  t.same(unmatchedServicePorts(service({ app: 'web' }, [{ name: 'metrics', port: 9090 }]), ports), ['Service web port metrics (targetPort 9090/TCP)']);
  t.same(unmatchedServicePorts(service({ app: 'web' }, [{ port: 80, targetPort: 'admin' }]), ports), ['Service web port 80 (targetPort admin/TCP)']);
  t.same(unmatchedServicePorts(service({ app: 'web' }, [{ port: 80, targetPort: 8080, protocol: 'UDP' }]), ports), ['Service web port 80 (targetPort 8080/UDP)'], 'another protocol is no match');
});

t.test('template problems: what the API server would refuse, keys the registrar owns, linkerd-proxy, duplicates', async (t) => {
  t.same(templateProblems(group()), []);
  const bad = group({
    metadata: { labels: { 'bad key!': 'x', ok: 'not a value!', 'meshexpansion.dev/group': 'other' }, annotations: { 'meshexpansion.dev/registrar-replica': 'x', 'Bad_Prefix/x': 'y' } },
    ports: [{ port: 4143, name: 'linkerd-proxy' }, { port: 80, name: 'http' }, { port: 81, name: 'http' }, { port: 80, name: 'web' }],
  });
  const problems = templateProblems(bad);
  t.match(problems, [
    /^label key "bad key!": the name must be/,
    /^label ok: the value "not a value!" is not a label value/,
    /^label meshexpansion\.dev\/group is the registrar's own/,
    /^annotation meshexpansion\.dev\/registrar-replica: keys under meshexpansion\.dev\/ are the registrar's own/,
    /^annotation key "Bad_Prefix\/x": the prefix must be a DNS subdomain/,
    /^port 4143 is named linkerd-proxy/,
    /^port name http appears twice/,
    /^port 80\/TCP appears twice/,
  ]);
  t.equal(problems.length, 8);
});

t.test('status: counts per group from one pass, conditions, lastTransitionTime only on a flip, compared without rewriting', async (t) => {
  const counts = countByGroup([workload('a', 'web', 'True'), workload('b', 'web', 'False'), workload('c', 'web', undefined), workload('d', 'other', 'True'), workload('e', 'web', 'True', 'elsewhere')]);
  t.same(counts.get('shop/web'), { workloads: 3, ready: 1 });
  t.same(counts.get('elsewhere/web'), { workloads: 1, ready: 1 });
  const t0 = new Date('2026-01-01T00:00:00Z');
  const first = desiredGroupStatus(group(), counts.get('shop/web'), [service({ app: 'web' }, [{ port: 80, targetPort: 'http' }])], t0);
  t.equal(first.unmatchedPorts, 0);
  t.same(first.status.workloads, 3);
  t.same(first.status.readyWorkloads, 1);
  t.same(first.status.observedGeneration, 3);
  t.same(first.status.conditions!.map((c) => [c.type, c.status, c.reason]), [['Accepted', 'True', 'Accepted'], ['TemplateValid', 'True', 'Valid'], ['ServicePortsMatched', 'True', 'PortsMatched']]);
  const stored = { ...group(), status: first.status };
  const again = desiredGroupStatus(stored, counts.get('shop/web'), [service({ app: 'web' }, [{ port: 80, targetPort: 'http' }])], new Date('2026-01-01T01:00:00Z'));
  t.ok(sameGroupStatus(stored.status, again.status), 'nothing changed: nothing to write, an hour later too');
  const broken = desiredGroupStatus(stored, counts.get('shop/web'), [service({ app: 'web' }, [{ port: 9090 }])], new Date('2026-01-01T02:00:00Z'));
  t.notOk(sameGroupStatus(stored.status, broken.status));
  t.equal(broken.unmatchedPorts, 1);
  const ports = broken.status.conditions!.find((c) => c.type === 'ServicePortsMatched')!;
  t.match(ports, { status: 'False', reason: 'UnmatchedTargetPort', message: /Service web port 9090 \(targetPort 9090\/TCP\) match no port of spec\.template\.ports/, lastTransitionTime: '2026-01-01T02:00:00Z' });
  t.equal(broken.status.conditions!.find((c) => c.type === 'Accepted')!.lastTransitionTime, '2026-01-01T00:00:00Z', 'an unchanged condition keeps its time');
  const fewer = desiredGroupStatus(stored, { workloads: 3, ready: 2 }, [], new Date());
  t.notOk(sameGroupStatus(stored.status, fewer.status), 'a count change is a change');
  const badIps = desiredGroupStatus(group(undefined, { allowedIPs: ['10.0.0.0/8', '10.1.2.3', 'nonsense/99'] }), undefined, [], t0);
  t.match(badIps.status.conditions![0], { type: 'Accepted', status: 'False', reason: 'InvalidAllowedIPs', message: /\["10\.1\.2\.3","nonsense\/99"\] are not CIDRs/ });
  t.same([badIps.status.workloads, badIps.status.readyWorkloads], [0, 0]);
});

t.test('probes: a named port the template carries is sent as its number; other names are left to the harness', async (t) => {
  const g = group(undefined, { probes: [{ name: 'h', httpGet: { path: '/', port: 'http' } }, { name: 't', tcpSocket: { port: 'pg' } }, { name: 'x', tcpSocket: { port: 'local-only' } }, { name: 'n', httpGet: { port: 9000 } }, { name: 'e', exec: { command: ['true'] } }] });
  t.same(resolvedProbes(g), [
    { name: 'h', httpGet: { path: '/', port: 8080 } },
    { name: 't', tcpSocket: { port: 5432 } },
    { name: 'x', tcpSocket: { port: 'local-only' } },
    { name: 'n', httpGet: { port: 9000 } },
    { name: 'e', exec: { command: ['true'] } },
  ]);
  t.same(g.spec.probes![0], { name: 'h', httpGet: { path: '/', port: 'http' } }, 'the group itself is not changed');
});
