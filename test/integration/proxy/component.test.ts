import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry, type Counter } from 'prom-client';
import type { HarnessConfig } from '../../../src/config/types.ts';
import { IdentityComponent } from '../../../src/identity/component.ts';
import { ProxyComponent } from '../../../src/proxy/component.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { waitFor } from '../../helpers/tmp.ts';
import { captureLogger, processRuns } from '../../unit/supervisor/helpers.ts';
import { buildDevProxy } from './dev-proxy-bin.ts';
import { httpGet, proxyConfig, SPIFFE_ID, workloadApi } from './helpers.ts';

const { executable } = await buildDevProxy(t);

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** The real identity component and the proxy component over a development Workload API. */
async function setup(t: Teardown, options: { identities?: Array<{ spiffeId: string }>; ttlMs?: number; dirMode?: number } = {}) {
  const api = await workloadApi(t, options.identities ?? [], { ...(options.ttlMs ? { ttlMs: options.ttlMs } : {}), ...(options.dirMode ? { dirMode: options.dirMode } : {}) });
  const anchorsFile = join(api.dir, 'trust-anchors.pem');
  writeFileSync(anchorsFile, api.ca.bundlePem, { mode: 0o644 });
  const config = await proxyConfig(t, {
    socketPath: api.socketPath,
    extra: { identity: { trustAnchorsFile: anchorsFile, expiryMargin: '1s' }, proxy: { binary: executable, user: 'nobody', group: 'nogroup', shutdownGrace: '5s' } },
  });
  const registry = new Registry();
  const identity = new IdentityComponent({ config, log: silentLogger(), registry, backoff: { baseMs: 50, maxMs: 200 } });
  const { log, records } = captureLogger();
  const proxy = new ProxyComponent({
    config,
    log,
    registry,
    identity,
    workloadName: () => 'web-1',
    trustAnchorsPem: () => readFileSync(anchorsFile, 'utf8'),
    supervision: { backoff: { baseMs: 100, maxMs: 1000 }, readyPollMs: 50, steadyPollMs: 200 },
  });
  await identity.start();
  t.teardown(async () => {
    const pid = proxy.pid();
    await proxy.stop();
    await identity.stop();
    if (pid !== undefined && processRuns(pid)) {
      process.kill(pid, 'SIGKILL');
      throw new Error(`proxy pid ${pid} outlived stop()`);
    }
  });
  const restarts = async () => (await (registry.getSingleMetric('mesh_harness_child_restarts_total') as Counter).get()).values.find((v) => v.labels.child === 'proxy')?.value;
  return { api, config, identity, proxy, records, restarts };
}

function uidOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'))!;
  return Number(line.split(/\s+/)[1]);
}

t.test('the proxy is not started before the identity component holds a valid SVID', async (t) => {
  const { api, identity, proxy, records } = await setup(t);
  const started = proxy.start();
  await waitFor('Pending on the SVID', () => (proxy.state().message === 'waiting for a valid SVID before starting the proxy' ? true : undefined));
  t.equal(proxy.state().phase, 'Pending');
  // The identity component has talked to the Workload API and been refused: nothing to wait for but the SVID.
  await waitFor('the identity component to be refused', () => (identity.state().lastError ? true : undefined));
  await new Promise((r) => setTimeout(r, 300));
  t.equal(proxy.pid(), undefined, 'no proxy process while there is no SVID');
  t.notOk(records.some((r) => r.event === 'proxy-spawned'));

  await api.server.setIdentities([{ spiffeId: SPIFFE_ID }]);
  await started;
  t.ok(identity.current(), 'the SVID was validated when the proxy started');
  const spawned = records.find((r) => r.event === 'proxy-spawned');
  t.equal(spawned?.pid, proxy.pid());
  t.ok(Date.parse(String(spawned?.svidReadyAt)) <= Date.parse(String(spawned?.time)), 'the spawn log line comes after the SVID');
  await waitFor('the proxy to report ready', () => (proxy.state().phase === 'Ready' ? true : undefined));
  t.equal(uidOf(proxy.pid()!), 65534, 'the proxy runs as proxy.user');
  const detail = proxy.state().detail ?? {};
  t.equal(detail.pid, proxy.pid());
  t.ok(detail.startedAt, 'detail records when the proxy was spawned');
  t.equal(detail.user, 'nobody');
  const certified = await waitFor('the proxy log line about its certificate', () => records.find((r) => r.stream === 'stdout' && /^Certified identity id=/.test(r.msg)));
  t.equal(certified.component, 'proxy', "the proxy's own log lines carry component proxy");
  t.equal(certified.level, 30, 'and the level the proxy gave them');
});

t.test('SIGKILL of the proxy: restarted, counted, ready again', async (t) => {
  const { proxy, restarts, config } = await setup(t, { identities: [{ spiffeId: SPIFFE_ID }] });
  await proxy.start();
  await waitFor('ready', () => (proxy.state().phase === 'Ready' ? true : undefined));
  t.equal(await restarts(), 0);
  const first = proxy.pid()!;
  process.kill(first, 'SIGKILL');
  await waitFor('readiness to drop', () => (proxy.state().phase !== 'Ready' ? true : undefined));
  t.match(proxy.state().lastError, /killed by SIGKILL/);
  await waitFor('a new proxy process, ready', () => (proxy.state().phase === 'Ready' && proxy.pid() !== first ? true : undefined));
  t.equal(await restarts(), 1, 'mesh_harness_child_restarts_total{child="proxy"} went up');
  t.equal((await httpGet(config.proxy.adminPort, '/ready')).status, 200);
});

t.test('update restarts the proxy only when its environment changes', async (t) => {
  const { proxy, config, records } = await setup(t, { identities: [{ spiffeId: SPIFFE_ID }] });
  await proxy.start();
  await waitFor('ready', () => (proxy.state().phase === 'Ready' ? true : undefined));
  const first = proxy.pid();

  const iptablesOnly: HarnessConfig = { ...config, iptables: { ...config.iptables, ignoreOutboundPorts: [{ from: 5432, to: 5432 }] } };
  await proxy.update(iptablesOnly);
  t.equal(proxy.pid(), first, 'an iptables-only change leaves the proxy alone');

  await proxy.update({ ...iptablesOnly, proxy: { ...iptablesOnly.proxy, logLevel: 'debug' } });
  t.not(proxy.pid(), first, 'a new log level restarts it');
  t.same(records.find((r) => r.event === 'proxy-restart')?.changed, ['LINKERD2_PROXY_LOG']);
  await waitFor('ready again', () => (proxy.state().phase === 'Ready' ? true : undefined));
});

t.test('stop during the wait for the SVID returns promptly and spawns nothing', async (t) => {
  const { proxy } = await setup(t);
  const started = proxy.start();
  await waitFor('Pending on the SVID', () => (proxy.state().message === 'waiting for a valid SVID before starting the proxy' ? true : undefined));
  await proxy.stop();
  await started;
  t.equal(proxy.state().phase, 'Stopped');
  t.equal(proxy.pid(), undefined);
});

t.test('an extraEnv that overrides a rendered variable fails the start before any waiting', async (t) => {
  // Config validation refuses this (exit 78); the component refuses it too when handed such a config in code.
  const valid = await proxyConfig(t, {
    socketPath: '/run/unused/api.sock',
    extra: { proxy: { binary: executable, user: 'nobody', group: 'nogroup' } },
  });
  const config = { ...valid, proxy: { ...valid.proxy, extraEnv: { LINKERD2_PROXY_ADMIN_LISTEN_ADDR: '0.0.0.0:4191' } } };
  let waited = false;
  const proxy = new ProxyComponent({
    config,
    log: silentLogger(),
    registry: new Registry(),
    identity: { waitForSvid: async () => void (waited = true) },
    workloadName: () => 'web-1',
    trustAnchorsPem: () => '',
  });
  await t.rejects(proxy.start(), { name: 'ProxyEnvError', message: /proxy\.extraEnv\.LINKERD2_PROXY_ADMIN_LISTEN_ADDR: the harness renders this variable itself; remove it and set proxy\.adminPort instead/ });
  t.equal(proxy.state().phase, 'Failed');
  t.match(proxy.state().lastError, /LINKERD2_PROXY_ADMIN_LISTEN_ADDR/);
  t.notOk(waited, 'did not wait for an SVID');
  t.equal(proxy.pid(), undefined);
});

t.test('a Workload API socket the proxy user cannot reach: start fails naming the directory and its mode', async (t) => {
  const { api, proxy } = await setup(t, { identities: [{ spiffeId: SPIFFE_ID }], dirMode: 0o700 });
  // The harness itself (root) reaches the socket and holds the SVID; only the proxy user cannot.
  const escaped = api.dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  await t.rejects(proxy.start(), { name: 'ProxyAccessError', message: new RegExp(`the proxy user nobody \\(group nogroup\\) cannot enter directory ${escaped} \\(mode 0700, owner 0:0\\)`) });
  t.equal(proxy.state().phase, 'Failed');
  t.not(proxy.state().ready, true);
  t.match(proxy.state().lastError, /Workload API socket: .*chmod o\+x/);
  t.equal(proxy.pid(), undefined, 'no proxy was started');
});

t.test('a proxy whose certificate expires while /ready stays 200 is restarted, not reported ready', async (t) => {
  const { api, proxy, records, restarts } = await setup(t, { identities: [{ spiffeId: SPIFFE_ID }], ttlMs: 4000 });
  await proxy.start();
  await waitFor('ready', () => (proxy.state().phase === 'Ready' ? true : undefined));
  const first = proxy.pid()!;
  // No more SVIDs: the proxy keeps its certificate until it expires, and its /ready latch stays open.
  await api.server.setIdentities([]);
  const unhealthy = await waitFor('the harness to find the identity gone', () => records.find((r) => r.event === 'child-unhealthy'), 20_000);
  t.equal(unhealthy.pid, first);
  t.match(unhealthy.reason, /identity certificate expired at .* and was not renewed/);
  await waitFor('the old proxy to be replaced', () => (proxy.pid() !== undefined && proxy.pid() !== first ? true : undefined));
  t.not(proxy.state().phase, 'Ready', 'the new proxy has no certificate: not ready');
  t.match(proxy.state().lastError, /restarted: the proxy's identity certificate expired/);
  t.ok((await restarts())! >= 1, 'counted as a restart');

  await api.server.setIdentities([{ spiffeId: SPIFFE_ID }]);
  await waitFor('ready again once SVIDs flow', () => (proxy.state().phase === 'Ready' ? true : undefined), 30_000);
});
