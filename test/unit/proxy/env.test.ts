import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../../src/config/load.ts';
import type { HarnessConfig } from '../../../src/config/types.ts';
import { extraEnvProblems, formatEnvFile, ProxyEnvError, renderProxyEnv, workloadApiAddress } from '../../../src/proxy/env.ts';
import { tempDir, writeJson } from '../../helpers/tmp.ts';

const goldenDir = fileURLToPath(new URL('../../golden/proxy/', import.meta.url));
const update = process.env.UPDATE_GOLDEN === '1';

const ANCHORS = '-----BEGIN CERTIFICATE-----\nMIIBtestanchor\n-----END CERTIFICATE-----\n';

const base = {
  workload: { group: 'web', namespace: 'shop', nodeName: 'vm-1', ports: [8080, { port: 9090, name: 'metrics' }] },
  identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/web', serverName: 'web.shop.serviceaccount.identity.linkerd.cluster.local' },
  proxy: { destinationAddr: 'linkerd-dst-headless.linkerd.svc.cluster.local.:8086', policyAddr: 'linkerd-policy.linkerd.svc.cluster.local.:8090' },
};

/** Each scenario: the config file content, the registrar-assigned name, and its golden file; IPv4-only hosts unless ipv6Host. */
const scenarios: Array<{ name: string; file: Record<string, Record<string, unknown>>; workloadName: string; ipv6Host?: boolean; cluster?: { defaultInboundPolicy: string; clusterNetworks: string[] } }> = [
  { name: 'registered', file: base, workloadName: 'web-7f9c2' },
  {
    // No name from anywhere: derived from namespace, group, node and SPIFFE ID, as the registrar does.
    name: 'derived-name',
    file: { ...base, workload: { ...base.workload, ports: [] }, proxy: { destinationAddr: base.proxy.destinationAddr } },
    workloadName: '',
  },
  { name: 'configured-name', file: { ...base, workload: { ...base.workload, name: 'web-fixed' } }, workloadName: '' },
  {
    name: 'ipv6',
    file: {
      ...base,
      workload: { ...base.workload, ips: ['10.0.0.5', 'fd00::5'] },
      identity: { ...base.identity, workloadApiSocket: '/run/spire/sockets/agent.sock' },
      proxy: { destinationAddr: '[fd00::10]:8086', adminPort: 5191 },
    },
    workloadName: 'web-7f9c2',
    ipv6Host: true,
  },
  {
    name: 'extra-env',
    file: {
      ...base,
      proxy: {
        ...base.proxy,
        logLevel: 'debug',
        logFormat: 'plain',
        shutdownGrace: '1500ms',
        inboundDefaultPolicy: 'all-authenticated',
        clusterNetworks: ['10.0.0.0/8'],
        extraEnv: { LINKERD2_PROXY_CORES: '2', RUST_BACKTRACE: '1' },
      },
    },
    workloadName: "o'brien",
    // Local settings win over what the registrar sent.
    cluster: { defaultInboundPolicy: 'deny', clusterNetworks: ['192.168.0.0/16'] },
  },
  {
    name: 'registrar-settings',
    file: { ...base, workload: { ...base.workload, ips: ['10.0.0.5'] } },
    workloadName: 'web-7f9c2',
    cluster: { defaultInboundPolicy: 'cluster-authenticated', clusterNetworks: ['10.0.0.0/8', 'fd00::/8'] },
  },
];

/** The host is part of the input (it decides IPv6), so the goldens do not depend on the machine. */
function configFrom(t: { teardown(fn: () => unknown): void }, file: Record<string, unknown>, ipv6Host = false): HarnessConfig {
  const dir = tempDir(t);
  return loadConfig({ path: writeJson(dir, 'config.json', file), env: {}, host: { ipv6Loopback: ipv6Host } }).config;
}

for (const scenario of scenarios) {
  t.test(`golden: ${scenario.name}`, async (t) => {
    const config = configFrom(t, scenario.file, scenario.ipv6Host);
    const rendered = formatEnvFile(renderProxyEnv(config, { workloadName: scenario.workloadName, trustAnchorsPem: ANCHORS, cluster: scenario.cluster }));
    const golden = `${goldenDir}${scenario.name}.env`;
    if (update) writeFileSync(golden, rendered);
    t.ok(existsSync(golden), `test/golden/proxy/${scenario.name}.env exists (UPDATE_GOLDEN=1 writes it)`);
    t.equal(rendered, readFileSync(golden, 'utf8'), `matches test/golden/proxy/${scenario.name}.env (UPDATE_GOLDEN=1 rewrites it)`);
  });
}

t.test('every variable the real proxy requires is rendered, in a stable order', async (t) => {
  const config = configFrom(t, base);
  const env = renderProxyEnv(config, { workloadName: 'w', trustAnchorsPem: ANCHORS });
  for (const required of [
    'LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS',
    'LINKERD2_PROXY_IDENTITY_SERVER_ID',
    'LINKERD2_PROXY_IDENTITY_SERVER_NAME',
    'LINKERD2_PROXY_IDENTITY_SPIRE_WORKLOAD_API_ADDRESS',
    'LINKERD2_PROXY_DESTINATION_SVC_ADDR',
    'LINKERD2_PROXY_DESTINATION_SVC_NAME',
    'LINKERD2_PROXY_POLICY_SVC_ADDR',
    'LINKERD2_PROXY_POLICY_SVC_NAME',
    'LINKERD2_PROXY_POLICY_WORKLOAD',
    'LINKERD2_PROXY_DESTINATION_CONTEXT',
    'LINKERD2_PROXY_INBOUND_LISTEN_ADDR',
    'LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS',
    'LINKERD2_PROXY_ADMIN_LISTEN_ADDR',
    'LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD',
  ]) {
    t.ok(env[required], `${required} is set`);
  }
  t.same(JSON.parse(env.LINKERD2_PROXY_POLICY_WORKLOAD!), { ns: 'shop', external_workload: 'w' });
  t.same(JSON.parse(env.LINKERD2_PROXY_DESTINATION_CONTEXT!), { ns: 'shop', nodeName: 'vm-1', external_workload: 'w' });
  t.equal(env.LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD, '30s');
  t.same(Object.keys(renderProxyEnv(config, { workloadName: 'w', trustAnchorsPem: ANCHORS })), Object.keys(env));
});

t.test('the policy address defaults to the destination address', async (t) => {
  const config = configFrom(t, { ...base, proxy: { destinationAddr: 'dst.example:8086' } });
  t.equal(renderProxyEnv(config, { workloadName: 'w', trustAnchorsPem: ANCHORS }).LINKERD2_PROXY_POLICY_SVC_ADDR, 'dst.example:8086');
});

t.test('proxy.extraEnv cannot override rendered variables or their aliases', async (t) => {
  // loadConfig refuses such a file (exit 78); built in code, the renderer refuses it too.
  const valid = configFrom(t, base);
  const config = { ...valid, proxy: { ...valid.proxy, extraEnv: { LINKERD2_PROXY_INBOUND_LISTEN_ADDR: '0.0.0.0:1', LINKERD2_PROXY_IDENTITY_SPIRE_SOCKET: '/x', LINKERD2_PROXY_CORES: '2' } } };
  t.same(extraEnvProblems(config), [
    'proxy.extraEnv.LINKERD2_PROXY_IDENTITY_SPIRE_SOCKET: the harness renders this variable itself; remove it and set identity.workloadApiSocket instead',
    'proxy.extraEnv.LINKERD2_PROXY_INBOUND_LISTEN_ADDR: the harness renders this variable itself; remove it and set proxy.inboundPort instead',
  ]);
  t.throws(() => renderProxyEnv(config, { workloadName: 'w', trustAnchorsPem: ANCHORS }), ProxyEnvError);
  t.same(extraEnvProblems(configFrom(t, base)), []);
});

t.test('Workload API socket: a bare path becomes a unix:// URL', async (t) => {
  t.equal(workloadApiAddress('/run/spire/agent/api.sock'), 'unix:///run/spire/agent/api.sock');
  t.equal(workloadApiAddress('unix:///run/spire/agent/api.sock'), 'unix:///run/spire/agent/api.sock');
});

t.test('the env file is valid shell that round-trips every value', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const env = { A: "it's", B: 'multi\nline', C: 'plain-value:1', D: '{"ns":"x"}' };
  const file = writeJson(tempDir(t), 'proxy.env', formatEnvFile(env));
  const out = execFileSync('/bin/sh', ['-c', `set -a; . "$0"; printf '%s\\0' "$A" "$B" "$C" "$D"`, file], { env: {} }).toString();
  t.same(out.split('\0').slice(0, 4), Object.values(env));
});

t.test('cluster settings: local config over the registrar over Linkerd defaults; INBOUND_IPS from the workload IPs', async (t) => {
  const config = configFrom(t, base);
  const defaults = renderProxyEnv(config, { workloadName: 'w', trustAnchorsPem: ANCHORS });
  t.equal(defaults.LINKERD2_PROXY_INBOUND_DEFAULT_POLICY, 'all-unauthenticated', 'before the registrar spoke: Linkerd default');
  t.equal(defaults.LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS, '10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8');
  t.notOk('LINKERD2_PROXY_INBOUND_IPS' in defaults, 'no IPs known, none rendered');
  const cluster = { defaultInboundPolicy: 'deny', clusterNetworks: ['10.1.0.0/16'] };
  const fromRegistrar = renderProxyEnv(config, { workloadName: 'w', trustAnchorsPem: ANCHORS, cluster, detectedIps: ['192.0.2.7'] });
  t.equal(fromRegistrar.LINKERD2_PROXY_INBOUND_DEFAULT_POLICY, 'deny');
  t.equal(fromRegistrar.LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS, '10.1.0.0/16');
  t.equal(fromRegistrar.LINKERD2_PROXY_INBOUND_IPS, '192.0.2.7', 'detected IPs when workload.ips is empty');
  const local = configFrom(t, { ...base, workload: { ...base.workload, ips: ['10.0.0.5'] }, proxy: { ...base.proxy, inboundDefaultPolicy: 'audit' } });
  const overridden = renderProxyEnv(local, { workloadName: 'w', trustAnchorsPem: ANCHORS, cluster, detectedIps: ['192.0.2.7'] });
  t.equal(overridden.LINKERD2_PROXY_INBOUND_DEFAULT_POLICY, 'audit', 'local proxy.inboundDefaultPolicy wins');
  t.equal(overridden.LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS, '10.1.0.0/16', 'an empty local clusterNetworks takes the registrar\'s');
  t.equal(overridden.LINKERD2_PROXY_INBOUND_IPS, '10.0.0.5', 'configured IPs win over detected ones');
});

t.test('the derived name is the default for the policy workload', async (t) => {
  const config = configFrom(t, base);
  const env = renderProxyEnv(config, { workloadName: '', trustAnchorsPem: ANCHORS });
  const { external_workload: name } = JSON.parse(env.LINKERD2_PROXY_POLICY_WORKLOAD!) as { external_workload: string };
  t.match(name, /^web-vm-1-[0-9a-f]{10}$/);
  t.equal(JSON.parse(env.LINKERD2_PROXY_DESTINATION_CONTEXT!).external_workload, name);
});
