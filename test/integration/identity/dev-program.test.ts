import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { repoRoot } from '../../helpers/cli.ts';
import { tempDir, waitFor } from '../../helpers/tmp.ts';
import { startIdentity } from './client-suite.ts';

t.test('dev-workload-api serves SVIDs chaining to the anchors it writes, and cleans up on SIGTERM', async (t) => {
  const dir = tempDir(t);
  const socketPath = join(dir, 'api.sock');
  const anchorsFile = join(dir, 'anchors.pem');
  const spiffeId = 'spiffe://root.linkerd.cluster.local/vm/demo';
  const child = execa(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/dev/workload-api/main.ts'), '--socket', `unix://${socketPath}`, '--trust-anchors-out', anchorsFile, '--ttl', '20s'], {
    env: { MESH_DEV_WORKLOAD_API_SPIFFE_ID: spiffeId, MESH_DEV_WORKLOAD_API_LOG_LEVEL: 'warn' },
    cwd: repoRoot,
    reject: false,
  });
  t.teardown(() => child.kill('SIGKILL'));
  await waitFor('the dev server socket', () => (existsSync(socketPath) ? true : undefined), 30_000);

  const { identity } = await startIdentity(t, { socketPath, spiffeId, anchorsFile, register: async () => {}, kill: async () => {}, restart: async () => {} });
  const svid = await identity.waitForSvid();
  t.equal(svid.spiffeId, spiffeId);
  t.equal(identity.state().phase, 'Ready');
  await identity.stop();

  child.kill('SIGTERM');
  const result = await child;
  t.equal(result.exitCode, 0, String(result.stderr));
  t.notOk(existsSync(socketPath), 'socket removed');
});
