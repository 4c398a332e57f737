/**
 * The install record beside the proxy binary is the only source of the proxy's version
 * (linkerd2-proxy has no --version): it must vouch for the file it was written for and no
 * other, and `status` must compare it with the control plane's release.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AdminStatus } from '../../../src/admin/server.ts';
import { renderStatusTable } from '../../../src/cli/commands/status.ts';
import { compareWithControlPlane, installRecordPath, readInstalledProxy, summarizeInstall, type ProxyInstallRecord } from '../../../src/proxy/install-record.ts';
import { tempDir } from '../../helpers/tmp.ts';

function installed(dir: string, content: string, overrides: Partial<ProxyInstallRecord> = {}): string {
  const binary = join(dir, 'linkerd2-proxy');
  writeFileSync(binary, content, { mode: 0o755 });
  const record: ProxyInstallRecord = {
    schemaVersion: 1,
    binary,
    sha256: createHash('sha256').update(content).digest('hex'),
    size: Buffer.byteLength(content),
    source: 'cr.l5d.io/linkerd/proxy:edge-25.4.1',
    sourceKind: 'registry',
    version: 'edge-25.4.1',
    proxyVersion: 'v2.290.0',
    manifestDigest: `sha256:${'a'.repeat(64)}`,
    platform: 'linux/amd64',
    installedAt: '2026-01-01T00:00:00.000Z',
    installedBy: '0.1.0',
    ...overrides,
  };
  writeFileSync(installRecordPath(binary), JSON.stringify(record));
  return binary;
}

t.test('the record vouches for the binary it was written for only', async (t) => {
  const dir = tempDir(t);
  const binary = installed(dir, 'proxy one');
  t.match(await readInstalledProxy(binary), { state: 'recorded', record: { version: 'edge-25.4.1' } });

  writeFileSync(binary, 'proxy two');
  t.match(await readInstalledProxy(binary), { state: 'changed', reason: /has sha256 .*, not the .* installed/ }, 'same size, other content: the hash tells');
  writeFileSync(binary, 'a longer proxy binary');
  t.match(await readInstalledProxy(binary), { state: 'changed', reason: /is 21 bytes, not the 9 installed/ });

  const bare = join(tempDir(t), 'linkerd2-proxy');
  writeFileSync(bare, 'copied by hand');
  t.same(await readInstalledProxy(bare), { state: 'unrecorded' });
  writeFileSync(installRecordPath(bare), '{"schemaVersion": 2}');
  t.match(await readInstalledProxy(bare), { state: 'unreadable', reason: /is not an install record/ });
});

t.test("the installed release against the control plane's", async (t) => {
  const dir = tempDir(t);
  const summary = summarizeInstall(await readInstalledProxy(installed(dir, 'proxy')));
  t.same(compareWithControlPlane(summary, 'edge-25.4.1'), { line: "edge-25.4.1 (linkerd2-proxy v2.290.0), the control plane's version", differs: false });
  t.match(compareWithControlPlane(summary, 'edge-25.5.2'), { line: "edge-25.4.1 (linkerd2-proxy v2.290.0), but the control plane's is edge-25.5.2", differs: true });
  t.match(compareWithControlPlane(summary, undefined), { line: /control plane's is not known/, differs: false });
  t.match(compareWithControlPlane({ state: 'unrecorded' }, 'edge-25.5.2'), { line: /version is unknown/, differs: false }, 'an unknown version is not called different');
});

t.test('status shows the proxy version and says how to match the control plane', async (t) => {
  const summary = summarizeInstall(await readInstalledProxy(installed(tempDir(t), 'proxy')));
  const since = new Date().toISOString();
  const status: AdminStatus = {
    ready: true, version: '0.1.0', pid: 1, startedAt: since, status: 'ready',
    components: [
      { name: 'proxy', phase: 'Ready', ready: true, since, message: 'ready', detail: { installed: summary } },
      { name: 'registration', phase: 'Ready', ready: true, since, message: 'registered', detail: { controlPlaneProxy: { name: 'cr.l5d.io/linkerd/proxy', version: 'edge-25.5.2', image: 'cr.l5d.io/linkerd/proxy:edge-25.5.2' } } },
    ],
  };
  t.match(renderStatusTable(status), "proxy version: edge-25.4.1 (linkerd2-proxy v2.290.0), but the control plane's is edge-25.5.2 (mesh-harness proxy install takes the control plane's)");
});
