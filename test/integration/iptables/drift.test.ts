// The running IptablesComponent repairs drift by itself: by nft change events on the nft
// backend, by polling on the legacy backend. Each drift is injected with the real iptables
// program in a namespace the test creates.
import t from 'tap';
import { Registry, type Counter } from 'prom-client';
import { loadConfig } from '../../../src/config/load.ts';
import { findTools, type BackendMode } from '../../../src/iptables/backend.ts';
import { IptablesComponent } from '../../../src/iptables/component.ts';
import { desiredRulesets, resolveRenderInput } from '../../../src/iptables/desired.ts';
import { NatTable } from '../../../src/iptables/nat-table.ts';
import type { CommandRunner } from '../../../src/iptables/runner.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { captureLogger } from '../../unit/supervisor/helpers.ts';
import { createNetns } from '../../helpers/netns.ts';
import { waitFor } from '../../helpers/tmp.ts';
import { SKIP_WITHOUT_SETUP } from '../../helpers/host.ts';

const JUMP_IN = ['-p', 'tcp', '-m', 'comment', '--comment', 'mesh-harness: inbound TCP through the proxy', '-j', 'MESH_HARNESS_INBOUND'];
const JUMP_OUT = ['-p', 'tcp', '-m', 'comment', '--comment', 'mesh-harness: outbound TCP through the proxy', '-j', 'MESH_HARNESS_OUTBOUND'];

async function repairsOf(registry: Registry): Promise<number> {
  const counter = registry.getSingleMetric('mesh_harness_iptables_drift_repairs_total') as Counter | undefined;
  return (await counter?.get())?.values.reduce((sum, v) => sum + v.value, 0) ?? 0;
}

for (const mode of ['nft', 'legacy'] as BackendMode[]) {
  t.test(`${mode}: the running component repairs every kind of drift`, async (t) => {
    const ns = await createNetns(t, `drift-${mode}`);
    const sets = ['proxy.user=nobody', 'proxy.group=nogroup', `iptables.backend=${mode}`, 'iptables.ipv6=off'];
    const { config } = loadConfig({ path: null, env: {}, sets });
    const registry = new Registry();
    const component = new IptablesComponent({ config, log: silentLogger(), registry, runner: ns.runner });
    t.teardown(() => component.stop());
    await component.start();
    t.equal(component.state().phase, 'Pending', 'chains prepared, no jumps until the proxy answers ready');
    await component.enableRedirect();
    t.equal(component.state().phase, 'Ready');
    t.equal(component.state().detail?.changeEvents, mode === 'nft' ? 'nft monitor' : 'poll every 1000 ms');
    t.equal(await repairsOf(registry), 0, 'the first install is not a repair');

    const table = new NatTable(ns.runner, (await findTools(ns.runner, mode, 'ipv4'))!);
    const desired = desiredRulesets(await resolveRenderInput(config), ['ipv4']).get('ipv4');
    t.same(await table.drift(desired), []);

    const iptables = `iptables-${mode}`;
    const drifts: Array<[string, string[]]> = [
      ['flush an owned chain', ['-F', 'MESH_HARNESS_OUTBOUND']],
      ['delete a jump', ['-D', 'PREROUTING', ...JUMP_IN]],
      ['add a duplicate jump', ['-A', 'OUTPUT', ...JUMP_OUT]],
      ['insert a rule into an owned chain', ['-I', 'MESH_HARNESS_INBOUND', '1', '-p', 'tcp', '-j', 'RETURN']],
      ['put a foreign rule in front of a jump', ['-I', 'PREROUTING', '1', '-p', 'tcp', '-m', 'tcp', '--dport', '9999', '-j', 'RETURN']],
    ];
    for (const [what, args] of drifts) {
      const before = await repairsOf(registry);
      await ns.exec([iptables, '-t', 'nat', ...args]);
      await waitFor(`repair after "${what}"`, async () => ((await repairsOf(registry)) > before && (await table.drift(desired)).length === 0 ? true : undefined), 15_000);
      t.pass(`${what}: repaired, counted in mesh_harness_iptables_drift_repairs_total`);
    }
    const saved = await ns.exec([`iptables-${mode}-save`, '-t', 'nat']);
    t.match(saved, /-A PREROUTING -p tcp -m comment --comment "mesh-harness: inbound TCP through the proxy" -j MESH_HARNESS_INBOUND\n-A PREROUTING -p tcp -m tcp --dport 9999 -j RETURN/, 'the foreign rule is kept, behind our jump');
    t.equal(component.state().detail?.repairs, drifts.length);
    t.equal(component.state().phase, 'Ready');

    await component.stop();
    t.same(await table.drift(desired), [], 'onStop=keep (the default) leaves the rules in place');
  });
}

t.test('nft: the component does not react to its own changes', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const ns = await createNetns(t, 'quiet');
  const { config } = loadConfig({ path: null, env: {}, sets: ['proxy.user=nobody', 'proxy.group=nogroup', 'iptables.backend=nft', 'iptables.ipv6=off'] });
  const registry = new Registry();
  let looks = 0;
  const counting: CommandRunner = {
    ...ns.runner,
    run(argv, options) {
      if (argv[0]?.endsWith('-save')) looks += 1;
      return ns.runner.run(argv, options);
    },
  };
  const component = new IptablesComponent({ config, log: silentLogger(), registry, runner: counting });
  t.teardown(() => component.stop());
  await component.start();
  await component.enableRedirect();
  await new Promise((r) => setTimeout(r, 300));
  looks = 0;
  await ns.exec(['iptables-nft', '-t', 'nat', '-F', 'MESH_HARNESS_INBOUND']);
  await waitFor('one repair', async () => ((await repairsOf(registry)) === 1 ? true : undefined), 15_000);
  await new Promise((r) => setTimeout(r, 500));
  t.equal(await repairsOf(registry), 1, 'exactly one repair for one drift');
  // One pass: a look that finds the drift and a look that verifies the repair. The events
  // raised by the repair itself must not start another pass.
  t.equal(looks, 2, 'one pass, not one per event of our own transaction');
});

t.test('a reload applies a changed configuration, is not drift, and ignores an unchanged one', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const ns = await createNetns(t, 'reload');
  const sets = ['proxy.user=nobody', 'proxy.group=nogroup', 'iptables.ipv6=off'];
  const { config } = loadConfig({ path: null, env: {}, sets });
  const registry = new Registry();
  const { log, records } = captureLogger();
  const component = new IptablesComponent({ config, log, registry, runner: ns.runner });
  t.teardown(() => component.stop());
  await component.start();
  await component.enableRedirect();
  t.equal(component.state().phase, 'Ready');
  // Without the '# Generated ... on <time>' lines.
  const saves = async () => (await ns.exec(['iptables-save', '-t', 'nat'])).split('\n').filter((l) => !l.startsWith('#')).join('\n');
  const before = await saves();
  await (await component.prepare(config)).commit();
  t.equal(await saves(), before, 'same configuration: nothing applied');
  const { config: changed } = loadConfig({ path: null, env: {}, sets: [...sets, 'iptables.ignoreOutboundPorts=5432'] });
  await (await component.prepare(changed)).commit();
  t.match(await saves(), /--dports 5432 .*-j RETURN/);
  // Let a netfilter event or poll of our own change come and go: still not drift.
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await repairsOf(registry), 0, 'a reload that changes the rules is not counted as drift');
  t.notOk(records.some((r) => /repaired iptables drift/.test(String(r.msg))), 'nor logged as drift');
  t.equal(component.state().detail?.repairs, 0);
  t.ok(records.some((r) => r.msg === 'applied redirect rules' && r.trigger === 'configuration reloaded'), 'logged as applied by the reload');
  const { config: disabled } = loadConfig({ path: null, env: {}, sets: [...sets, 'iptables.enabled=false', 'iptables.onStop=clean'] });
  await (await component.prepare(disabled)).commit();
  t.equal(component.state().phase, 'Disabled');
  t.notMatch(await saves(), /MESH_HARNESS/, 'disabled with onStop=clean: rules removed');
});

t.test('a reload the host cannot apply is refused by prepare and changes nothing', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const ns = await createNetns(t, 'refuse');
  const sets = ['proxy.user=nobody', 'proxy.group=nogroup', 'iptables.ipv6=off'];
  const { config } = loadConfig({ path: null, env: {}, sets });
  const component = new IptablesComponent({ config, log: silentLogger(), registry: new Registry(), runner: ns.runner });
  t.teardown(() => component.stop());
  await component.start();
  await component.enableRedirect();
  const saves = async () => (await ns.exec(['iptables-save', '-t', 'nat'])).split('\n').filter((l) => !l.startsWith('#')).join('\n');
  const before = await saves();
  const { config: bad } = loadConfig({ path: null, env: {}, sets: [...sets, 'proxy.user=mh-no-such-user', 'iptables.ignoreOutboundPorts=5432'] });
  await t.rejects(component.prepare(bad), { name: 'ConfigError' });
  t.equal(await saves(), before, 'rules unchanged');
  t.equal(component.state().phase, 'Ready');
});

t.test('a proxy user that does not exist is a configuration error', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const ns = await createNetns(t, 'nouser');
  const { config } = loadConfig({ path: null, env: {}, sets: ['proxy.user=mh-no-such-user', 'proxy.group=nogroup'] });
  const component = new IptablesComponent({ config, log: silentLogger(), registry: new Registry(), runner: ns.runner });
  await t.rejects(component.start(), { name: 'ConfigError', message: /proxy\.user: got "mh-no-such-user"; user "mh-no-such-user" does not exist/ });
  t.equal(component.state().phase, 'Failed');
  t.notMatch(await ns.exec(['iptables-save', '-t', 'nat']), /MESH_HARNESS/, 'nothing installed');
});
