import t from 'tap';
import type { Hello } from '../../../src/protocol/registration.ts';
import { workloadName } from '../../../src/protocol/workload-name.ts';
import { decideIps, decideName, decideServerName, peerAddress, type Peer } from '../../../src/registrar/admission.ts';
import { boundedState, helloProblems, stateProblem, STATE_LIMITS } from '../../../src/registrar/message-limits.ts';
import type { ExternalGroup } from '../../../src/registrar/store.ts';

const ID = 'spiffe://td/vm/web';
const hello: Hello = { protocol_version: 1, group: 'web', namespace: 'shop', node_name: 'vm-1', workload_ips: ['192.0.2.10'], versions: { harness: '0.1.0', proxy: 'v2', spire_agent: '1.15.3' }, workload_name: '', state: null, server_name: 'web.shop.vm.example', proxy_inbound_port: 4143, machine_id: 'abc' };
const group = (spec: Partial<ExternalGroup['spec']> = {}, template: ExternalGroup['spec']['template'] = { serverName: 'web.shop.vm.example' }): ExternalGroup => ({
  apiVersion: 'meshexpansion.dev/v1alpha1',
  kind: 'ExternalGroup',
  metadata: { name: 'web', namespace: 'shop' },
  spec: { allowedIdentities: [ID], template, ...spec },
});
const peer: Peer = { spiffeId: ID, dnsNames: [], address: '192.0.2.10' };
const derived = workloadName({ namespace: 'shop', group: 'web', nodeName: 'vm-1', spiffeId: ID });
const noGroups = () => false;

t.test('name: derived on the server; the harness\'s own only where the group allows it, and never one of another group\'s', async (t) => {
  t.same(decideName(hello, group(), ID, noGroups), { ok: true, value: derived }, 'no name in the hello: the derived one');
  t.same(decideName({ ...hello, workload_name: derived }, group(), ID, noGroups), { ok: true, value: derived });
  const squat = workloadName({ namespace: 'shop', group: 'billing', nodeName: 'vm-9', spiffeId: 'spiffe://td/vm/billing' });
  const refused = decideName({ ...hello, workload_name: squat }, group(), ID, noGroups);
  t.match(refused, { ok: false, reason: 'NameMismatch' });
  t.equal((refused as { message: string }).message, `this machine's proxy was given the ExternalWorkload name ${squat} (workload.name), but ExternalGroup shop/web does not allow custom names; the registrar's name for it is ${derived}: empty workload.name on the machine (the harness then derives ${derived}), or set spec.allowCustomNames: true on the group`);

  const custom = group({ allowCustomNames: true });
  t.same(decideName({ ...hello, workload_name: 'web-primary' }, custom, ID, noGroups), { ok: true, value: 'web-primary' });
  t.match(decideName({ ...hello, workload_name: squat }, custom, ID, noGroups), { ok: false, reason: 'NameMismatch', message: /custom names in ExternalGroup shop\/web must start with "web-"/ }, 'another group\'s prefix');
  const sameGroupDerived = workloadName({ namespace: 'shop', group: 'web', nodeName: 'vm-2', spiffeId: ID });
  t.match(decideName({ ...hello, workload_name: sameGroupDerived }, custom, ID, noGroups), { ok: false, message: /may not end like a derived name/ }, 'a derived name of another machine of the group');
  t.match(decideName({ ...hello, workload_name: 'web-api-1' }, custom, ID, (name) => name === 'web-api'), { ok: false, message: /names starting with "web-api-" belong to ExternalGroup shop\/web-api/ }, 'the longer group name owns its prefix');
  t.same(decideName({ ...hello, workload_name: 'web-api-1' }, custom, ID, (name) => name === 'web'), { ok: true, value: 'web-api-1' }, 'the group itself is no longer prefix');
});

t.test('server name: the group\'s, else a DNS name of the SVID, never the hello\'s alone', async (t) => {
  t.same(decideServerName(hello, group(), peer), { ok: true, value: 'web.shop.vm.example' });
  t.same(decideServerName({ ...hello, server_name: '' }, group(), peer), { ok: true, value: 'web.shop.vm.example' }, 'a harness that sends none gets the group\'s');
  const mismatch = decideServerName({ ...hello, server_name: 'kubernetes.default.svc' }, group(), peer);
  t.same(mismatch, { ok: false, reason: 'ServerNameMismatch', message: 'this machine\'s proxy presents the server name "kubernetes.default.svc" (identity.serverName), but ExternalGroup shop/web spec.template.serverName is "web.shop.vm.example": set identity.serverName to web.shop.vm.example on the machine (or change the group\'s spec.template.serverName)' });

  const bare = group({}, {});
  t.match(decideServerName(hello, bare, peer), { ok: false, reason: 'NoServerName', message: /ExternalGroup shop\/web has no spec\.template\.serverName and the SVID of spiffe:\/\/td\/vm\/web carries no DNS name: set spec\.template\.serverName on the group \(to web\.shop\.vm\.example if/ });
  const withSans = { ...peer, dnsNames: ['vm-1.web.example', 'web.shop.vm.example'] };
  t.same(decideServerName(hello, bare, withSans), { ok: true, value: 'web.shop.vm.example' }, 'the SAN the hello names');
  t.match(decideServerName({ ...hello, server_name: '' }, bare, withSans), { ok: false, reason: 'NoServerName', message: /this machine's hello names no server name \(identity\.serverName\) and ExternalGroup shop\/web sets no spec\.template\.serverName/ }, 'none named and none in the group: refused, never a name the proxy may not present');
  t.match(decideServerName({ ...hello, server_name: 'kubernetes.default.svc' }, bare, withSans), { ok: false, reason: 'ServerNameMismatch', message: /its SVID's DNS names are \["vm-1\.web\.example","web\.shop\.vm\.example"\]/ });
  t.match(decideServerName(hello, bare, { ...peer, dnsNames: ['Not A Name'] }), { ok: false, reason: 'NoServerName' }, 'a SAN that is no DNS name does not count');
});

t.test('IPs: the connection\'s source address, or inside spec.allowedIPs', async (t) => {
  t.same(decideIps(hello, group(), peer), { ok: true, value: ['192.0.2.10'] }, 'its own address');
  t.same(decideIps({ ...hello, workload_ips: ['192.0.2.10'] }, group(), { ...peer, address: '::ffff:192.0.2.10' }), { ok: true, value: ['192.0.2.10'] }, 'IPv4-mapped source');
  const foreign = decideIps({ ...hello, workload_ips: ['10.96.0.1'] }, group(), peer);
  t.same(foreign, { ok: false, reason: 'IPNotAllowed', message: 'workload IP 10.96.0.1 is neither the address this machine connects from (192.0.2.10) nor inside ExternalGroup shop/web spec.allowedIPs []: set workload.ips on the machine to the address the registrar sees, or add a CIDR covering 10.96.0.1 to the group\'s spec.allowedIPs (needed when the machines reach the registrar through NAT)' });
  const allowed = group({ allowedIPs: ['10.20.0.0/16', 'fd00::/8', 'junk', '10.30.0.1'] });
  t.same(decideIps({ ...hello, workload_ips: ['10.20.3.4', 'fd00:0::10'] }, allowed, peer), { ok: true, value: ['10.20.3.4', 'fd00:0::10'] });
  t.match(decideIps({ ...hello, workload_ips: ['10.30.0.1'] }, allowed, peer), { ok: false, reason: 'IPNotAllowed', message: /spec\.allowedIPs \["10\.20\.0\.0\/16","fd00::\/8"\]/ }, 'entries that are not CIDRs are ignored');
  t.match(decideIps({ ...hello, workload_ips: ['192.0.2.10', '2001:db8::1'] }, allowed, peer), { ok: false, message: /^workload IP 2001:db8::1 is neither/ }, 'each IP on its own');
  t.equal(peerAddress('192.0.2.10:5000'), '192.0.2.10');
  t.equal(peerAddress('[fd00::1]:5000'), 'fd00::1');
  t.equal(peerAddress('[::ffff:192.0.2.10]:5000'), '192.0.2.10');
});

t.test('hello limits: every field bounded, refused naming the field and the setting', async (t) => {
  t.same(helloProblems(hello), []);
  const huge = 'x'.repeat(3 * 1024 * 1024);
  t.same(helloProblems({ ...hello, node_name: huge }), [`node_name is ${huge.length} characters long, more than 253 (workload.nodeName)`]);
  t.same(helloProblems({ ...hello, node_name: 'n'.repeat(253) }), [], '253 is a node name');
  t.match(helloProblems({ ...hello, machine_id: 'm'.repeat(65) }), [/^machine_id is 65 characters long, more than 64$/]);
  t.match(helloProblems({ ...hello, versions: { harness: 'v'.repeat(65), proxy: '', spire_agent: '' } }), [/^versions\.harness is 65 characters/]);
  t.match(helloProblems({ ...hello, group: 'g'.repeat(64) }), [/^group "g{64}" is not a DNS-1123 label of at most 63 characters \(workload\.group\)$/]);
  t.match(helloProblems({ ...hello, namespace: '' }), ['namespace is empty (set workload.namespace)']);
  t.match(helloProblems({ ...hello, server_name: `${'a'.repeat(250)}.com` }), [/^server_name .* is not a lowercase DNS name of at most 253 characters \(identity\.serverName\)$/]);
  t.match(helloProblems({ ...hello, node_name: 'vm\n1' }), ['node_name holds control characters (workload.nodeName)']);
  t.match(helloProblems({ ...hello, workload_ips: ['192.0.2.1', '192.0.2.2', 'fd00::1'] }), [/^workload_ips has 3 addresses, at most 2/]);
  t.match(helloProblems({ ...hello, workload_ips: ['192.0.2.1', '192.0.2.2'] }), [/two addresses of one family/]);
  t.match(helloProblems({ ...hello, workload_ips: ['10.96.0.1.nip.io'] }), [/is not an IP address/]);
  t.same(helloProblems({ ...hello, proxy_inbound_port: 65535 }), [], '65535 is a port');
  t.same(helloProblems({ ...hello, proxy_inbound_port: 0 }), [], '0: not said (a harness from before the field)');
  t.same(helloProblems({ ...hello, proxy_inbound_port: 65536 }), ['proxy_inbound_port 65536 is not a port (1-65535; proxy.inboundPort)']);
  t.match(helloProblems({ ...hello, proxy_inbound_port: 4294967295 }), [/^proxy_inbound_port 4294967295 is not a port/]);
  const probes = Array.from({ length: STATE_LIMITS.probes + 1 }, (_, i) => ({ name: `p${i}`, success: true, message: '', observed_unix_ms: 0 }));
  t.match(helloProblems({ ...hello, state: { proxy_ready: true, probes, reason: '', message: '' } }), [/^state has 65 probe results, at most 64$/]);
});

t.test('state changes: texts cut to size, too many probe results refused', async (t) => {
  const state = boundedState({ proxy_ready: true, probes: [{ name: 'n'.repeat(500), success: false, message: 'm'.repeat(100_000), observed_unix_ms: 1 }], reason: 'R'.repeat(500), message: 'x'.repeat(100_000) });
  t.equal(state.probes[0]!.name.length, STATE_LIMITS.probeName);
  t.equal(state.probes[0]!.message.length, STATE_LIMITS.probeMessage);
  t.ok(state.probes[0]!.message.endsWith('…'), 'a cut text says so');
  t.equal(state.reason.length, STATE_LIMITS.reason);
  t.equal(state.message.length, STATE_LIMITS.message);
  t.equal(state.probes[0]!.success, false, 'the verdict is kept');
  t.same(boundedState(null), { proxy_ready: false, probes: [], reason: '', message: '' }, 'absent: not ready');
  t.equal(stateProblem({ proxy_ready: true, probes: [], reason: '', message: '' }), undefined);
  const probes = Array.from({ length: STATE_LIMITS.probes + 1 }, (_, i) => ({ name: `p${i}`, success: true, message: '', observed_unix_ms: 0 }));
  t.equal(stateProblem({ proxy_ready: true, probes, reason: '', message: '' }), 'a state change with 65 probe results, at most 64');
});
