import t from 'tap';
import type { AdminStatus } from '../../../src/admin/server.ts';
import type { Outcome } from '../../../src/check/check.ts';
import { controlPlaneChecks } from '../../../src/check/control-plane.ts';
import type { Facts } from '../../../src/check/facts.ts';
import { loadConfig } from '../../../src/config/load.ts';
import type { HarnessConfig } from '../../../src/config/types.ts';
import { configuredWorkloadName } from '../../../src/protocol/workload-name.ts';

const ID = 'spiffe://root.linkerd.cluster.local/vm/web';

function config(extra: string[] = []): HarnessConfig {
  const loaded = loadConfig({
    env: {},
    defaultPath: '/nonexistent/mesh-harness-control-plane.json',
    sets: [
      `identity.spiffeId=${ID}`,
      'identity.serverName=web.vm.cluster.local',
      'proxy.destinationAddr=dst.example:8086',
      'control.registrarAddress=registrar.example:8443',
      'workload.group=web',
      'workload.namespace=shop',
      'workload.nodeName=vm-7',
      ...extra,
    ],
  });
  return loaded.config;
}

type Component = AdminStatus['components'][number];

/** The control.registrar check against a running harness whose registration component is `registration`. */
async function registrar(cfg: HarnessConfig, registration: Partial<Component> | undefined): Promise<Outcome> {
  const status: AdminStatus = {
    ready: false,
    version: '0.0.0',
    pid: 4242,
    startedAt: new Date(0).toISOString(),
    status: '',
    components: registration ? [{ name: 'registration', phase: 'Degraded', ready: false, since: new Date(0).toISOString(), message: '', ...registration }] : [],
  };
  const facts = { daemon: async () => ({ running: true, status, host: '127.0.0.1', port: 4192 }) } as unknown as Facts;
  const [check] = controlPlaneChecks(cfg, facts);
  return (await check!.run()) as Outcome;
}

function refused(reason: string, message: string, workloadName = 'web-vm-7-0123456789'): Partial<Component> {
  return {
    message: `refused by the registrar (${reason}); retrying in 60s`,
    lastError: message,
    detail: { refusal: { reason, message, workloadName, retryAfterSeconds: 60, at: new Date(0).toISOString() } },
  };
}

t.test('NotAllowed: the registrar\'s words, and a hint naming the ExternalGroup, the SPIFFE ID and a pattern', async (t) => {
  const outcome = await registrar(config(), refused('NotAllowed', `${ID} is not in ExternalGroup shop/web spec.allowedIdentities`));
  t.match(outcome, {
    verdict: 'fail',
    message: `the registrar refused this machine (NotAllowed): ${ID} is not in ExternalGroup shop/web spec.allowedIdentities; the harness asks again 60 s after this refusal, by itself`,
    hint: `add ${ID} (or a pattern covering it, such as spiffe://root.linkerd.cluster.local/vm/*) to spec.allowedIdentities of ExternalGroup shop/web (kubectl -n shop edit externalgroup web), or set workload.group / workload.namespace to a group that allows it`,
  });
});

t.test('GroupNotFound: create the group or name an existing one', async (t) => {
  const outcome = await registrar(config(), refused('GroupNotFound', 'ExternalGroup shop/web does not exist'));
  t.match(outcome, { verdict: 'fail', message: /\(GroupNotFound\): ExternalGroup shop\/web does not exist/, hint: /^ExternalGroup shop\/web does not exist: create it with spiffe:\S+\/vm\/web in spec\.allowedIdentities, .*kubectl -n shop get externalgroups/ });
});

t.test('NameTaken: the fix is on this machine, and differs between a derived and a configured workload.name', async (t) => {
  const derived = configuredWorkloadName(config());
  const held = `ExternalWorkload shop/${derived} is held by node vm-7 (${ID}, machine 0123456789ab), connected since 2025-01-01T00:00:00.000Z from 10.0.0.9:51234`;
  const fromNode = await registrar(config(), refused('NameTaken', held, derived));
  t.equal(fromNode.verdict, 'fail');
  t.match(fromNode, { message: `the registrar refused this machine (NameTaken): ${held}; the harness asks again 60 s after this refusal, by itself` });
  t.match(fromNode, { hint: new RegExp(`^ExternalWorkload shop/${derived} is held by another machine .*give this machine a workload\\.nodeName of its own`) });
  t.match(fromNode, { hint: new RegExp(`kubectl -n shop get externalworkload ${derived} -o yaml`) });
  t.notMatch(fromNode, { hint: /allowedIdentities/ }, 'nothing to change in the group');

  const named = await registrar(config(['workload.name=billing']), refused('NameTaken', 'ExternalWorkload shop/billing belongs to node vm-1 (spiffe://root.linkerd.cluster.local/vm/billing)', 'billing'));
  t.match(named, { verdict: 'fail', hint: /^ExternalWorkload shop\/billing is held by another machine .*workload\.name billing must be unique in namespace shop/ });
});

t.test('every other reason has its own hint; transient ones only warn', async (t) => {
  const cases: Array<[string, 'fail' | 'warn', RegExp]> = [
    ['NotAuthenticated', 'fail', /identity\.spiffeId \S+ must be in the registrar's trustDomain/],
    ['InvalidHello', 'fail', /fix the setting the registrar names \(.*identity\.serverName\)/],
    ['NameMismatch', 'fail', /^this machine gave its proxy the name web-vm-7-0123456789 \(workload\.name\), .*empty workload\.name.*spec\.allowCustomNames: true and the name must start with "web-"/],
    ['TooManyWorkloads', 'fail', /spiffe:\S+\/vm\/web already holds as many ExternalWorkloads in ExternalGroup shop\/web as its spec\.maxWorkloadsPerIdentity allows .*a SPIFFE ID of its own.*kubectl -n shop edit externalgroup web/],
    ['IPNotAllowed', 'fail', /set workload\.ips to the address the registrar sees .*spec\.allowedIPs \(kubectl -n shop edit externalgroup web\)/],
    ['ServerNameMismatch', 'fail', /^identity\.serverName \(web\.vm\.cluster\.local\) is the server name this machine's proxy presents/],
    ['NoServerName', 'fail', /set spec\.template\.serverName \(to web\.vm\.cluster\.local, this machine's identity\.serverName, if that is the right name\)/],
    ['InvalidMessage', 'fail', /upgrade mesh-harness/],
    ['TooManyStreams', 'warn', /limits\.pendingStreamsPerIdentity/],
    ['UnsupportedProtocolVersion', 'fail', /this mesh-harness is older than the registrar serves/],
    ['Draining', 'warn', /shutting down/],
    ['Replaced', 'warn', /two harnesses/],
    ['SomethingNew', 'fail', /reason SomethingNew is not one this mesh-harness knows/],
  ];
  const hints = new Set<string>();
  for (const [reason, verdict, hint] of cases) {
    const outcome = await registrar(config(), refused(reason, `words for ${reason}`));
    t.match(outcome, { verdict, message: new RegExp(`^the registrar refused this machine \\(${reason}\\): words for ${reason}`), hint }, reason);
    hints.add(outcome.hint!);
  }
  t.equal(hints.size, cases.length, 'no two reasons share a hint');
});

t.test('a harness from before detail.refusal: the reason is read from its message', async (t) => {
  const outcome = await registrar(config(), { message: 'refused by the registrar (NotAllowed); retrying in 60s', lastError: `${ID} is not in ExternalGroup shop/web spec.allowedIdentities` });
  t.match(outcome, { verdict: 'fail', message: `the registrar refused this machine (NotAllowed): ${ID} is not in ExternalGroup shop/web spec.allowedIdentities`, hint: /^add spiffe:/ });
});

t.test('accepted passes; not yet connected warns', async (t) => {
  t.match(await registrar(config(), { phase: 'Ready', ready: true, message: 'registered as web-vm-7-0123456789 with replica reg-0', detail: { workloadName: 'web-vm-7-0123456789' } }), { verdict: 'ok', message: 'Ready: registered as web-vm-7-0123456789 with replica reg-0' });
  t.match(await registrar(config(), { message: 'not connected to the registrar at registrar.example:8443; retrying in 2s', lastError: 'connect ECONNREFUSED' }), { verdict: 'warn', message: /not connected .*ECONNREFUSED/, hint: /still connecting/ });
  t.match(await registrar(config(), undefined), { verdict: 'skip', message: /does not register with a registrar/ });
});
