// `mesh-harness iptables ...` from the built bundle, run inside a namespace the test creates.
import t from 'tap';
import { execa } from 'execa';
import { cleanEnv, harnessBin } from '../../helpers/cli.ts';
import { createNetns, type Netns } from '../../helpers/netns.ts';
import { tempDir, writeJson } from '../../helpers/tmp.ts';
import { SKIP_WITHOUT_SETUP } from '../../helpers/host.ts';

/** The accounts of this host stand in for meshproxy, which tests do not create. */
const ACCOUNTS = { MESH_HARNESS_PROXY_USER: 'nobody', MESH_HARNESS_PROXY_GROUP: 'nogroup' };

function cli(ns: Netns, args: string[], options: { env?: Record<string, string>; wrap?: string[] } = {}) {
  return execa('ip', ['netns', 'exec', ns.name, ...(options.wrap ?? []), process.execPath, harnessBin, 'iptables', ...args], {
    env: cleanEnv(options.env ?? {}),
    extendEnv: false,
    reject: false,
    timeout: 30_000,
  });
}

t.test('render, apply, diff and clean with a config file of {}', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const ns = await createNetns(t, 'cli');
  const config = writeJson(tempDir(t), 'config.json', {});
  const args = (sub: string) => [sub, '--config', config];

  const render = await cli(ns, args('render'), { env: ACCOUNTS });
  t.equal(render.exitCode, 0, render.stderr);
  t.match(render.stdout, /# ipv4: table nat[^\n]*\n\*nat\n:MESH_HARNESS_INBOUND - \[0:0\]/);
  t.match(render.stdout, /--dports 22,4143,4190,4191 .*SSH and proxy ports, always exempt/, 'SSH and the proxy ports are always exempt');
  t.match(render.stdout, /# ipv6: table nat/);

  const firstDiff = await cli(ns, args('diff'), { env: ACCOUNTS });
  t.equal(firstDiff.exitCode, 1, 'diff exits 1 while nothing is installed');
  t.match(firstDiff.stdout, /chain MESH_HARNESS_INBOUND is missing/);

  const apply = await cli(ns, args('apply'), { env: ACCOUNTS });
  t.equal(apply.exitCode, 0, apply.stderr);
  t.match(apply.stdout, /ipv4 \(nft backend\): applied/);
  const again = await cli(ns, args('apply'), { env: ACCOUNTS });
  t.match(again.stdout, /ipv4 \(nft backend\): already converged, nothing changed\nipv6 \(nft backend\): already converged/);

  const converged = await cli(ns, args('diff'), { env: ACCOUNTS });
  t.equal(converged.exitCode, 0, converged.stdout);

  await ns.exec(['ip6tables', '-t', 'nat', '-I', 'OUTPUT', '1', '-p', 'tcp', '-j', 'RETURN']);
  const drifted = await cli(ns, args('diff'), { env: ACCOUNTS });
  t.equal(drifted.exitCode, 1, 'diff exits 1 on drift');
  t.match(drifted.stdout, /ipv4 \(nft backend\): converged\nipv6 \(nft backend\): 1 difference\(s\):\n  jump is at OUTPUT position 2, behind: -A OUTPUT -p tcp -j RETURN/);

  const clean = await cli(ns, ['clean']);
  t.equal(clean.exitCode, 0, clean.stderr);
  t.match(clean.stdout, /ipv4 \(nft backend\): removed\n  chain MESH_HARNESS_INBOUND/);
  const saved = await ns.exec(['ip6tables-save', '-t', 'nat']);
  t.notMatch(saved, /MESH_HARNESS/);
  t.match(saved, /-A OUTPUT -p tcp -j RETURN/, 'the foreign rule stays');
  const cleanAgain = await cli(ns, ['clean']);
  t.equal(cleanAgain.exitCode, 0, 'clean with nothing installed is fine');
  t.match(cleanAgain.stdout, /ipv4 \(nft backend\): nothing installed/);
});

t.test('clean needs no configuration: it removes every backend\'s marked rules and nothing else', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const ns = await createNetns(t, 'clinocfg');
  const config = writeJson(tempDir(t), 'config.json', {});
  for (const backend of ['nft', 'legacy']) {
    const apply = await cli(ns, ['apply', '--config', config, '--set', `iptables.backend=${backend}`], { env: ACCOUNTS });
    t.equal(apply.exitCode, 0, `${backend}: ${apply.stderr}`);
  }
  // What Docker and a firewall leave in table nat, in both backends.
  await ns.exec(['iptables-nft', '-t', 'nat', '-N', 'DOCKER']);
  await ns.exec(['iptables-nft', '-t', 'nat', '-A', 'PREROUTING', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'DOCKER']);
  await ns.exec(['iptables-legacy', '-t', 'nat', '-A', 'POSTROUTING', '-s', '172.17.0.0/16', '-j', 'MASQUERADE']);
  await ns.exec(['ip6tables-nft', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '9', '-j', 'RETURN']);

  // An environment no configuration loader accepts: clean never looks at it.
  const clean = await cli(ns, ['clean'], { env: { MESH_HARNESS_IPTABLES_BACKEND: 'bogus' } });
  t.equal(clean.exitCode, 0, clean.stderr);
  t.match(clean.stdout, /ipv4 \(nft backend\): removed/);
  t.match(clean.stdout, /ipv4 \(legacy backend\): removed/);
  for (const save of ['iptables-nft-save', 'ip6tables-nft-save', 'iptables-legacy-save']) {
    t.notMatch(await ns.exec([save, '-t', 'nat']), /MESH_HARNESS/, `${save}: nothing of the harness left`);
  }
  t.match(await ns.exec(['iptables-nft-save', '-t', 'nat']), /-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER/, 'Docker\'s jump stays');
  t.match(await ns.exec(['iptables-legacy-save', '-t', 'nat']), /-A POSTROUTING -s 172\.17\.0\.0\/16 -j MASQUERADE/, 'the legacy masquerade stays');
  t.match(await ns.exec(['ip6tables-nft-save', '-t', 'nat']), /-A OUTPUT -p tcp -m tcp --dport 9 -j RETURN/, 'the IPv6 rule stays');

  const withConfig = await cli(ns, ['clean', '--config', config]);
  t.equal(withConfig.exitCode, 64, 'clean takes no --config: it never reads one');
});

t.test('errors name the cause and the fix', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const ns = await createNetns(t, 'clierr');
  const config = writeJson(tempDir(t), 'config.json', {});

  const noUser = await cli(ns, ['render', '--config', config], { env: { MESH_HARNESS_PROXY_USER: 'mh-no-such-user', MESH_HARNESS_PROXY_GROUP: 'nogroup' } });
  t.equal(noUser.exitCode, 78, 'a missing proxy user is a configuration error');
  t.match(noUser.stderr, /proxy\.user: got "mh-no-such-user"; user "mh-no-such-user" does not exist on this host; create it .* or set proxy\.user/);

  const noBinary = await cli(ns, ['apply', '--config', config], { env: { ...ACCOUNTS, PATH: '/usr/bin:/bin' } });
  t.equal(noBinary.exitCode, 69);
  t.match(noBinary.stderr, /not found on PATH.*apt-get install iptables/);

  const noCapability = await cli(ns, ['apply', '--config', config], { env: ACCOUNTS, wrap: ['setpriv', '--bounding-set=-net_admin'] });
  t.equal(noCapability.exitCode, 69);
  t.match(noCapability.stderr, /needs CAP_NET_ADMIN; run as root/);

  for (const result of [noUser, noBinary, noCapability]) t.notMatch(result.stderr, /\n\s+at /, 'no stack trace');

  const usage = await cli(ns, ['frob']);
  t.equal(usage.exitCode, 64);
});
