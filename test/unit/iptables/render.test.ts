import t from 'tap';
import { parsePortSpec } from '../../../src/config/formats.ts';
import { parseCidr } from '../../../src/util/cidr.ts';
import { classifyFailure, IptablesCommandError, IptablesUnavailableError } from '../../../src/iptables/errors.ts';
import { MULTIPORT_LIMIT, multiportLists, protectedInboundPorts, renderRuleset, type RenderInput } from '../../../src/iptables/render.ts';
import { loadConfig } from '../../../src/config/load.ts';
import { CHAIN_PREFIX, COMMENT_TAG, isOwnedChain, ruleTarget } from '../../../src/iptables/ruleset.ts';
import { concernsNat } from '../../../src/iptables/watch.ts';

/** The render input holds parsed values, as the config loader produces them. */
const ports = (...specs: Array<number | string>) => specs.map((spec) => parsePortSpec(spec)!);
const cidrs = (...texts: string[]) => texts.map((text) => parseCidr(text)!);

const base: RenderInput = {
  proxyUid: 2102,
  harnessGid: 2103,
  inboundPort: 4143,
  outboundPort: 4140,
  protectedInboundPorts: [],
  portsToRedirect: [],
  ignoreInboundPorts: ports(22, 4190, 4191),
  ignoreOutboundPorts: [],
  ignoreInboundSubnets: [],
  ignoreOutboundSubnets: [],
};

function portWeight(list: string): number {
  return list.split(',').reduce((n, p) => n + (p.includes(':') ? 2 : 1), 0);
}

t.test('every rule is tagged, every chain prefixed, jumps come only from PREROUTING and OUTPUT', async (t) => {
  for (const family of ['ipv4', 'ipv6'] as const) {
    const ruleset = renderRuleset({ ...base, ignoreOutboundSubnets: cidrs('169.254.169.254', 'fd00::/8') }, family);
    for (const chain of ruleset.chains) t.ok(chain.startsWith(CHAIN_PREFIX), chain);
    for (const rule of [...ruleset.rules, ...ruleset.jumps]) {
      const at = rule.args.indexOf('--comment');
      t.ok(at > 0 && rule.args[at + 1]!.startsWith(`${COMMENT_TAG}: `), `tagged: ${rule.args.join(' ')}`);
    }
    t.same(ruleset.jumps.map((j) => j.chain), ['PREROUTING', 'OUTPUT']);
    for (const jump of ruleset.jumps) t.ok(isOwnedChain(ruleTarget(jump)!));
  }
});

t.test('subnets go to their own family only', async (t) => {
  const input = { ...base, ignoreInboundSubnets: cidrs('10.0.0.0/8', 'fd00::/8'), ignoreOutboundSubnets: cidrs('169.254.169.254', 'fd00:ec2::254') };
  const v4 = renderRuleset(input, 'ipv4').rules.map((r) => r.args.join(' ')).join('\n');
  const v6 = renderRuleset(input, 'ipv6').rules.map((r) => r.args.join(' ')).join('\n');
  t.match(v4, /-s 10\.0\.0\.0\/8/);
  t.match(v4, /-d 169\.254\.169\.254\/32/);
  t.notMatch(v4, /fd00/);
  t.match(v6, /-s fd00::\/8/);
  t.match(v6, /-d fd00:ec2::254\/128/);
  t.notMatch(v6, /169\.254/);
});

t.test('outbound exemptions come before the redirect, in a fixed order', async (t) => {
  const rules = renderRuleset({ ...base, ignoreOutboundPorts: ports(443), ignoreOutboundSubnets: cidrs('169.254.169.254') }, 'ipv4').rules.filter((r) => r.chain.endsWith('OUTBOUND'));
  const shape = rules.map((r) => r.args.slice(0, 3).join(' '));
  t.same(shape, ['-m owner --uid-owner', '-m owner --gid-owner', '-o lo -m', '-d 169.254.169.254/32 -m', '-p tcp -m', '-p tcp -m']);
  t.same(rules[0]!.args.slice(0, 4), ['-m', 'owner', '--uid-owner', '2102']);
  t.same(rules[1]!.args.slice(0, 4), ['-m', 'owner', '--gid-owner', '2103']);
  t.same(rules.at(-1)!.args.slice(-4), ['-j', 'REDIRECT', '--to-ports', '4140']);
});

t.test('portsToRedirect limits the inbound redirect; ignored ports still win', async (t) => {
  const rules = renderRuleset({ ...base, portsToRedirect: ports(8080, '9000-9010') }, 'ipv4').rules.filter((r) => r.chain.endsWith('INBOUND'));
  t.equal(rules.length, 2);
  t.same(rules[0]!.args.slice(-1), ['RETURN']);
  t.ok(rules[1]!.args.join(' ').includes('--dports 8080,9000:9010'));
  t.same(rules[1]!.args.slice(-4), ['-j', 'REDIRECT', '--to-ports', '4143']);
});

t.test('multiport lists stay within 15 ports, a range counting two', async (t) => {
  const singles = Array.from({ length: 200 }, (_, i) => ({ from: 1000 + i * 3, to: 1000 + i * 3 }));
  const lists = multiportLists(singles);
  t.equal(lists.length, Math.ceil(200 / MULTIPORT_LIMIT));
  for (const list of lists) t.ok(portWeight(list) <= MULTIPORT_LIMIT, list);
  t.equal(lists.join(',').split(',').length, 200, 'no port lost');
  const ranges = multiportLists(Array.from({ length: 8 }, (_, i) => ({ from: 100 * i + 1, to: 100 * i + 50 })));
  t.same(ranges.map(portWeight), [14, 2]);
  t.same(multiportLists([]), []);
});

t.test('overlapping and duplicate ports collapse', async (t) => {
  const rules = renderRuleset({ ...base, ignoreInboundPorts: ports(22, 22, '100-200', '150-250', 4191, 4190) }, 'ipv4').rules;
  t.ok(rules[0]!.args.includes('22,100:250,4190,4191'), rules[0]!.args.join(' '));
});

t.test('subnets are canonical as iptables-save prints them', async (t) => {
  const cases: Array<[string, string]> = [
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['169.254.169.254', '169.254.169.254/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['192.168.1.77/23', '192.168.0.0/23'],
    ['FD00:0000::0001:0:0:0:1', 'fd00:0:0:1::1/128'],
    ['fd00::1/8', 'fd00::/8'],
    ['::1', '::1/128'],
    ['::', '::/128'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1/128'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1/128'],
    ['1:0:2:0:3:0:4:0', '1:0:2:0:3:0:4:0/128'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3/128'],
    ['fe80::1/10', 'fe80::/10'],
    ['2001:db8::/127', '2001:db8::/127'],
  ];
  for (const [input, expected] of cases) t.equal(parseCidr(input)?.text, expected, input);
  t.equal(parseCidr('not-a-subnet'), undefined);
});

t.test('failures are explained with the cause and the fix', async (t) => {
  const root = classifyFailure('iptables-nft-restore', 4, 'iptables-nft-restore v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)');
  t.type(root, IptablesUnavailableError);
  t.match(root.message, /CAP_NET_ADMIN/);
  const owner = classifyFailure('iptables-legacy-restore', 2, "iptables-restore v1.8.9 (legacy): Couldn't load match `owner':No such file or directory");
  t.type(owner, IptablesUnavailableError);
  t.match(owner.message, /modprobe xt_owner/);
  const ownerNft = classifyFailure('iptables-nft-restore', 1, 'Warning: Extension owner revision 0 not supported, missing kernel module?');
  t.match(ownerNft.message, /xt_owner/);
  const nat = classifyFailure('ip6tables-legacy-save', 1, "ip6tables-save v1.8.9: can't initialize ip6tables table `nat': Table does not exist (do you need to insmod?)");
  t.match(nat.message, /modprobe ip6table_nat/);
  const other = classifyFailure('iptables-nft-restore', 4, 'iptables-nft-restore v1.8.9 (nf_tables):\nline 3: RULE_APPEND failed (Invalid argument): rule in chain MESH_HARNESS_INBOUND\n');
  t.type(other, IptablesCommandError);
  t.match(other.message, /exit 4.*RULE_APPEND failed/);
});

t.test('nft monitor lines are filtered to table nat of ip and ip6', async (t) => {
  t.ok(concernsNat('add rule ip nat MESH_HARNESS_INBOUND counter packets 0 bytes 0 return'));
  t.ok(concernsNat('delete rule ip6 nat PREROUTING handle 4'));
  t.ok(concernsNat('delete table ip nat'));
  t.ok(concernsNat('flush ruleset'), 'a shape we do not know counts');
  t.notOk(concernsNat('add rule ip filter INPUT tcp dport 22 accept'));
  t.notOk(concernsNat('add rule inet firewalld filter_INPUT accept'));
  t.notOk(concernsNat('add element ip filter blocklist { 1.2.3.4 }'));
});

t.test('SSH and the proxy ports are exempt first, whatever the lists say; SSH only without redirectSsh', async (t) => {
  const config = (sets: string[]) => loadConfig({ path: null, env: {}, sets }).config;
  t.same(protectedInboundPorts(config(['iptables.ignoreInboundPorts=[]'])), [22, 4143, 4190, 4191], 'defaults: SSH and inbound/control/admin');
  t.same(protectedInboundPorts(config(['proxy.adminPort=5191', 'proxy.controlPort=5190', 'proxy.inboundPort=5143']), [2222, 22]), [22, 2222, 5143, 5190, 5191], 'configured proxy ports and the ports from sshd_config');
  t.same(protectedInboundPorts(config(['iptables.redirectSsh=true']), [2222]), [4143, 4190, 4191], 'the explicit opt-in drops SSH, never the proxy ports');
  const rules = renderRuleset({ ...base, protectedInboundPorts: [22, 4143], ignoreInboundPorts: [], portsToRedirect: [{ from: 22, to: 22 }, { from: 8080, to: 8080 }] }, 'ipv4').rules.filter((r) => r.chain.endsWith('INBOUND'));
  t.same(rules[0]!.args.slice(0, 6), ['-p', 'tcp', '-m', 'multiport', '--dports', '22,4143']);
  t.same(rules[0]!.args.slice(-2), ['-j', 'RETURN'], 'a RETURN in front of the redirect, even of a portsToRedirect that lists 22');
});
