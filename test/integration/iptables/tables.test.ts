// Real iptables (nft and legacy backends) in namespaces the tests create: the rendered
// rules round-trip, apply is idempotent, foreign rules are never touched, a rejected
// ruleset changes nothing, and clean removes exactly what was added.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.ts';
import { findTools, resolveBackend, type BackendMode } from '../../../src/iptables/backend.ts';
import { desiredRulesets, resolveRenderInput } from '../../../src/iptables/desired.ts';
import { IptablesCommandError } from '../../../src/iptables/errors.ts';
import { NatTable } from '../../../src/iptables/nat-table.ts';
import { INBOUND_CHAIN, tokenize, type Family, type Ruleset } from '../../../src/iptables/ruleset.ts';
import { repoRoot } from '../../helpers/cli.ts';
import { createNetns, type Netns } from '../../helpers/netns.ts';
import { SKIP_WITHOUT_SETUP } from '../../helpers/host.ts';

const MODES: BackendMode[] = ['nft', 'legacy'];
const FAMILIES: Family[] = ['ipv4', 'ipv6'];

const FOREIGN_V4 = `*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:DOCKER-USER - [0:0]
-A INPUT -p tcp -m tcp --dport 2222 -m comment --comment "ufw-like: allow 2222" -j ACCEPT
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
COMMIT
`;
const FOREIGN_V6 = `*nat
-A PREROUTING -p tcp -m tcp --dport 8443 -j REDIRECT --to-ports 9443
COMMIT
*filter
-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT
COMMIT
`;

function program(mode: BackendMode, family: Family, what: 'save' | 'restore' | ''): string {
  return `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${mode}${what ? `-${what}` : ''}`;
}

/** Every table of one family, without the comment lines that carry timestamps. */
async function saveAll(ns: Netns, mode: BackendMode, family: Family): Promise<string> {
  const text = await ns.exec([program(mode, family, 'save')]);
  return text.split('\n').filter((l) => !l.startsWith('#')).join('\n');
}

/** The lines of a save that the harness does not own. */
function foreign(text: string): string {
  return text
    .split('\n')
    .filter((l) => !l.startsWith(':MESH_HARNESS_') && !l.startsWith('-A MESH_HARNESS_') && !tokenize(l).some((tok, i, all) => tok.startsWith('MESH_HARNESS_') && (all[i - 1] === '-j' || all[i - 1] === '-g')))
    .join('\n');
}

async function setup(t: { teardown(fn: () => unknown): void }, mode: BackendMode) {
  const ns = await createNetns(t, `tbl-${mode}`);
  const { config } = loadConfig({ path: null, env: {}, sets: ['proxy.user=nobody', 'proxy.group=nogroup', 'iptables.ignoreOutboundSubnets=169.254.169.254,fd00:ec2::254'] });
  const desired = desiredRulesets(await resolveRenderInput(config), FAMILIES);
  const tables = new Map<Family, NatTable>();
  for (const family of FAMILIES) {
    const tools = await findTools(ns.runner, mode, family);
    if (!tools) throw new Error(`${program(mode, family, 'restore')} is not installed`);
    tables.set(family, new NatTable(ns.runner, tools));
  }
  return { ns, desired, tables };
}

for (const mode of MODES) {
  t.test(`${mode}: foreign rules survive apply, drift repair and clean byte for byte`, async (t) => {
    const { ns, desired, tables } = await setup(t, mode);
    await ns.exec([program(mode, 'ipv4', 'restore'), '--noflush'], FOREIGN_V4);
    await ns.exec([program(mode, 'ipv6', 'restore'), '--noflush'], FOREIGN_V6);
    for (const family of FAMILIES) {
      const table = tables.get(family)!;
      const before = await saveAll(ns, mode, family);
      t.match(before, /DOCKER|8443/, 'foreign rules are in place');

      const first = await table.converge(desired.get(family));
      t.ok(first.drift.length > 0, `${family}: the first apply installs`);
      const installed = await saveAll(ns, mode, family);
      for (let i = 0; i < 3; i++) t.same((await table.converge(desired.get(family))).drift, [], `${family}: apply again changes nothing`);
      t.equal(await saveAll(ns, mode, family), installed, `${family}: the ruleset is the same after applying 4 times`);
      t.equal(installed.split('\n').filter((l) => l.endsWith('-j MESH_HARNESS_INBOUND')).length, 1, 'one inbound jump');
      t.equal(installed.split('\n').filter((l) => l.endsWith('-j MESH_HARNESS_OUTBOUND')).length, 1, 'one outbound jump');
      t.match(installed, /\*nat\n:PREROUTING ACCEPT \[\d+:\d+\]\n(?:.*\n)*?-A PREROUTING -p tcp -m comment --comment "mesh-harness: inbound TCP through the proxy" -j MESH_HARNESS_INBOUND\n(-A PREROUTING -m addrtype|-A PREROUTING -p tcp -m tcp --dport 8443)/, 'our jump is first, the foreign one right behind');
      t.equal(foreign(installed), foreign(before), `${family}: foreign rules identical after apply`);

      const tool = program(mode, family, '');
      await ns.exec([tool, '-t', 'nat', '-F', 'MESH_HARNESS_OUTBOUND']);
      await ns.exec([tool, '-t', 'nat', '-D', 'PREROUTING', '-p', 'tcp', '-m', 'comment', '--comment', 'mesh-harness: inbound TCP through the proxy', '-j', 'MESH_HARNESS_INBOUND']);
      await ns.exec([tool, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-m', 'comment', '--comment', 'mesh-harness: outbound TCP through the proxy', '-j', 'MESH_HARNESS_OUTBOUND']);
      await ns.exec([tool, '-t', 'nat', '-I', 'MESH_HARNESS_INBOUND', '2', '-p', 'tcp', '-j', 'RETURN']);
      const repaired = await table.converge(desired.get(family));
      const flushed = desired.get(family)!.rules.filter((r) => r.chain === 'MESH_HARNESS_OUTBOUND').map(() => 'missing-rule');
      t.same(repaired.drift.map((d) => d.kind).sort(), ['duplicate-jump', 'extra-rule', 'missing-jump', ...flushed].sort(), `${family}: each injected drift is found`);
      t.equal(await saveAll(ns, mode, family), installed, `${family}: repair restores the installed ruleset exactly`);

      const cleaned = await table.converge(undefined);
      t.ok(cleaned.drift.length > 0, 'clean removes something');
      t.equal(await saveAll(ns, mode, family), before, `${family}: after clean the tables are byte-identical to before`);
      t.same((await table.converge(undefined)).drift, [], `${family}: clean with nothing installed is a no-op`);
    }
  });

  t.test(`${mode}: a ruleset the kernel rejects leaves the previous one intact`, async (t) => {
    const { ns, desired, tables } = await setup(t, mode);
    const table = tables.get('ipv4')!;
    await table.converge(desired.get('ipv4'));
    const before = await saveAll(ns, mode, 'ipv4');
    const good = desired.get('ipv4')!;
    // The owner match is only valid for locally generated packets; jumped to from
    // PREROUTING the kernel refuses the whole transaction.
    const rejected: Ruleset = {
      ...good,
      rules: [{ chain: INBOUND_CHAIN, args: ['-m', 'owner', '--uid-owner', '0', '-m', 'comment', '--comment', 'mesh-harness: rejected by the kernel', '-j', 'RETURN'] }, ...good.rules],
    };
    await t.rejects(table.converge(rejected), IptablesCommandError);
    t.equal(await saveAll(ns, mode, 'ipv4'), before, 'nothing changed');
    t.same((await table.converge(good)).drift, [], 'the previous ruleset is still converged');
  });

  t.test(`${mode}: every golden ruleset round-trips through the real iptables`, async (t) => {
    const ns = await createNetns(t, `gold-${mode}`);
    const dir = join(repoRoot, 'test', 'golden', 'iptables');
    const files = readdirSync(dir).filter((f) => f.endsWith('.rules'));
    t.ok(files.length >= 24, 'at least a dozen scenarios, two families each');
    for (const file of files) {
      const family: Family = file.endsWith('.v6.rules') ? 'ipv6' : 'ipv4';
      const tools = (await findTools(ns.runner, mode, family))!;
      const table = new NatTable(ns.runner, tools);
      const ruleset = rulesetFromGolden(readFileSync(join(dir, file), 'utf8'), family);
      // converge() itself re-reads the table and fails if iptables-save prints anything else.
      await table.converge(ruleset);
      t.same(await table.drift(ruleset), [], `${file} applied and read back identically`);
    }
  });
}

/** The Ruleset a golden file describes. */
function rulesetFromGolden(text: string, family: Family): Ruleset {
  const ruleset: Ruleset = { family, chains: [], rules: [], jumps: [] };
  for (const line of text.split('\n')) {
    if (line.startsWith(':')) ruleset.chains.push(line.slice(1).split(' ')[0]!);
    const tokens = tokenize(line);
    if (tokens[0] === '-A') ruleset.rules.push({ chain: tokens[1]!, args: tokens.slice(2) });
    if (tokens[0] === '-I') ruleset.jumps.push({ chain: tokens[1]!, args: tokens.slice(3) });
  }
  return ruleset;
}

t.test('backend auto follows the rules already on the host', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const ns = await createNetns(t, 'detect');
  const fresh = await resolveBackend(ns.runner, { backend: 'auto', ipv6: true });
  t.equal(fresh.mode, 'nft', 'no rules anywhere: the system default (nft on this host)');
  t.same(fresh.families.map((f) => f.family), ['ipv4', 'ipv6']);
  await ns.exec(['iptables-legacy', '-t', 'nat', '-A', 'POSTROUTING', '-s', '172.17.0.0/16', '-j', 'MASQUERADE']);
  const legacy = await resolveBackend(ns.runner, { backend: 'auto', ipv6: false });
  t.equal(legacy.mode, 'legacy', 'a host whose rules live in legacy tables gets ours there too');
  t.match(legacy.reason, /legacy tables hold 1 rules/);
  t.match(legacy.families, [{ family: 'ipv4', restore: /iptables-legacy-restore$/ }]);
  t.equal((await resolveBackend(ns.runner, { backend: 'nft', ipv6: false })).mode, 'nft', 'a configured backend wins');
});
