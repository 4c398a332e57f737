// One golden file per scenario and family: every change to the rendered rules shows up in
// review. UPDATE_GOLDEN=1 rewrites them.
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.ts';
import { renderInputFor, renderRuleset, type RenderInput } from '../../../src/iptables/render.ts';
import { renderRestore } from '../../../src/iptables/ruleset.ts';
import { repoRoot } from '../../helpers/cli.ts';

const goldenDir = join(repoRoot, 'test', 'golden', 'iptables');
const update = process.env.UPDATE_GOLDEN === '1';

/** Defaults straight from the schema, so a changed default shows up in the golden files. */
function fromConfig(sets: string[] = [], ids = { proxyUid: 2102, harnessGid: 2102 }, sshdPorts: number[] = []): RenderInput {
  const { config } = loadConfig({ path: null, env: {}, sets });
  return renderInputFor(config, { ...ids, sshdPorts });
}

const manyPorts = Array.from({ length: 200 }, (_, i) => 10_000 + i * 7);

const scenarios: Record<string, RenderInput> = {
  'defaults': fromConfig(),
  'custom-proxy-ports': fromConfig(['proxy.inboundPort=5143', 'proxy.outboundPort=5140', 'proxy.adminPort=5191', 'proxy.controlPort=5190']),
  'distinct-uid-gid': fromConfig([], { proxyUid: 999, harnessGid: 998 }),
  'ports-to-redirect': fromConfig(['iptables.portsToRedirect=8080,8443,9000-9100']),
  'ports-to-redirect-split': fromConfig([`iptables.portsToRedirect=${Array.from({ length: 20 }, (_, i) => 8000 + i).join(',')}`]),
  'no-ignored-ports': fromConfig(['iptables.ignoreInboundPorts=[]']),
  // sshd listens on 2222 too (sshd_config Port): exempt like 22.
  'sshd-ports': fromConfig([], undefined, [22, 2222]),
  // The explicit opt-in: SSH goes through the proxy; the proxy's own ports stay exempt.
  'redirect-ssh': fromConfig(['iptables.redirectSsh=true'], undefined, [2222]),
  'ignored-inbound-ranges': fromConfig(['iptables.ignoreInboundPorts=22,4190-4191,30000-32767,6443']),
  'ignored-outbound-ports': fromConfig(['iptables.ignoreOutboundPorts=25,443,3306,5432-5440']),
  'overlapping-and-duplicate-ports': fromConfig(['iptables.ignoreInboundPorts=22,22,100-200,150-250,251,4191,4190']),
  'ignored-inbound-subnets': fromConfig(['iptables.ignoreInboundSubnets=10.0.0.0/8,192.168.1.77/24,fd00:1234::5/48']),
  'metadata-service': fromConfig(['iptables.ignoreOutboundSubnets=169.254.169.254,fd00:ec2::254']),
  'ipv6-canonical-forms': fromConfig(['iptables.ignoreOutboundSubnets=2001:DB8:0:0:1:0:0:1/128,::ffff:10.1.2.3/120,fe80:0:0:0:0:0:0:0/10', 'iptables.ignoreInboundSubnets=2001:db8::/32,0:0:0:0:0:0:0:1']),
  'large': fromConfig([`iptables.ignoreInboundPorts=${manyPorts.join(',')}`, `iptables.ignoreOutboundSubnets=${Array.from({ length: 50 }, (_, i) => `100.${64 + i}.0.0/16`).join(',')}`]),
  'everything': fromConfig([
    'proxy.inboundPort=4143',
    'iptables.portsToRedirect=80,443,8000-8100',
    'iptables.ignoreInboundPorts=22,4190,4191,9100',
    'iptables.ignoreOutboundPorts=53,123-124',
    'iptables.ignoreInboundSubnets=10.10.0.0/16,fd10::/16',
    'iptables.ignoreOutboundSubnets=169.254.169.254/32,10.96.0.0/12,fd00:ec2::254/128',
  ], { proxyUid: 2102, harnessGid: 2103 }),
};

t.test('golden rulesets', async (t) => {
  mkdirSync(goldenDir, { recursive: true });
  for (const [name, input] of Object.entries(scenarios)) {
    for (const [family, suffix] of [['ipv4', 'v4'], ['ipv6', 'v6']] as const) {
      const file = join(goldenDir, `${name}.${suffix}.rules`);
      const rendered = renderRestore(renderRuleset(input, family));
      if (update || !existsSync(file)) {
        if (!update) t.fail(`${file} missing; run with UPDATE_GOLDEN=1 to create it`);
        writeFileSync(file, rendered);
        continue;
      }
      t.equal(rendered, readFileSync(file, 'utf8'), `${name} ${family} matches ${file} (UPDATE_GOLDEN=1 to accept a change)`);
    }
  }
});

t.test('rendering is deterministic and does not depend on input order', async (t) => {
  const a = fromConfig(['iptables.ignoreInboundPorts=4191,22,4190', 'iptables.ignoreOutboundSubnets=10.0.0.0/8,169.254.169.254']);
  const b = fromConfig(['iptables.ignoreInboundPorts=22,4190,4191', 'iptables.ignoreOutboundSubnets=10.0.0.0/8,169.254.169.254']);
  t.equal(renderRestore(renderRuleset(a, 'ipv4')), renderRestore(renderRuleset(b, 'ipv4')));
  t.equal(renderRestore(renderRuleset(a, 'ipv4')), renderRestore(renderRuleset(a, 'ipv4')));
});
