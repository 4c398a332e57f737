/**
 * `binaries.proxy-version`: the proxy installed by `proxy install` against the control
 * plane's release, as the running harness heard it from the registrar.
 */
import t from 'tap';
import type { AdminStatus } from '../../../src/admin/server.ts';
import { binaryChecks } from '../../../src/check/binaries.ts';
import type { Outcome } from '../../../src/check/check.ts';
import type { Facts } from '../../../src/check/facts.ts';
import { loadConfig } from '../../../src/config/load.ts';
import type { InstalledProxy, ProxyInstallRecord } from '../../../src/proxy/install-record.ts';

const BINARY = '/usr/lib/linkerd/linkerd2-proxy';

const record: ProxyInstallRecord = {
  schemaVersion: 1, binary: BINARY, sha256: 'ab'.repeat(32), size: 1, source: 'cr.l5d.io/linkerd/proxy:edge-25.4.1', sourceKind: 'registry',
  version: 'edge-25.4.1', manifestDigest: `sha256:${'a'.repeat(64)}`, platform: 'linux/amd64', installedAt: new Date(0).toISOString(), installedBy: '0.1.0',
};

async function proxyVersion(installed: InstalledProxy, controlPlaneVersion: string | undefined, path: string | null = BINARY): Promise<Outcome> {
  const config = loadConfig({ env: {}, defaultPath: '/nonexistent/mesh-harness-proxy-version.json', sets: [`proxy.binary=${BINARY}`] }).config;
  const since = new Date(0).toISOString();
  const status: AdminStatus = {
    ready: true, version: '0.1.0', pid: 1, startedAt: since, status: '',
    components: controlPlaneVersion
      ? [{ name: 'registration', phase: 'Ready', ready: true, since, message: '', detail: { controlPlaneProxy: { name: 'cr.l5d.io/linkerd/proxy', version: controlPlaneVersion, image: `cr.l5d.io/linkerd/proxy:${controlPlaneVersion}` } } }]
      : [],
  };
  const facts = {
    effects: { installedProxy: async () => (path ? { path, installed } : { installed }) },
    daemon: async () => ({ running: true, status, host: '127.0.0.1', port: 4192 }),
  } as unknown as Facts;
  const check = binaryChecks(config, facts).find((c) => c.id === 'binaries.proxy-version');
  return (await check!.run()) as Outcome;
}

t.test("the control plane's release: ok", async (t) => {
  t.match(await proxyVersion({ state: 'recorded', record }, 'edge-25.4.1'), { verdict: 'ok', message: "edge-25.4.1, the control plane's version" });
});

t.test('another release: a warning naming the image to install', async (t) => {
  t.match(await proxyVersion({ state: 'recorded', record }, 'edge-25.5.2'), {
    verdict: 'warn',
    message: "edge-25.4.1, but the control plane's is edge-25.5.2",
    hint: /^mesh-harness proxy install installs cr\.l5d\.io\/linkerd\/proxy:edge-25\.5\.2 \(then systemctl restart mesh-harness\)/,
  });
});

t.test('a binary replaced since it was recorded: a warning, not a version', async (t) => {
  t.match(await proxyVersion({ state: 'changed', record, reason: `${BINARY} is 2 bytes, not the 1 installed` }, 'edge-25.4.1'), { verdict: 'warn', message: /^changed since mesh-harness proxy install recorded edge-25\.4\.1/ });
});

t.test('not installed by proxy install, or no binary: skipped (the version cannot be known)', async (t) => {
  t.match(await proxyVersion({ state: 'unrecorded' }, 'edge-25.4.1'), { verdict: 'skip', message: /version is unknown/ });
  t.match(await proxyVersion({ state: 'unrecorded' }, 'edge-25.4.1', null), { verdict: 'skip', message: /not found/ });
});
