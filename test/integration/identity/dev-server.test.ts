import t from 'tap';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { DevCa } from '../../../src/dev/ca.ts';
import { DevWorkloadApiServer } from '../../../src/dev/workload-api/server.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { tempDir } from '../../helpers/tmp.ts';
import { clientSuite, type Workload } from './client-suite.ts';

const TRUST_DOMAIN = 'root.linkerd.cluster.local';

t.test('identity client against the development Workload API server', async (t) => {
  const ca = await DevCa.create({ trustDomain: TRUST_DOMAIN });
  let count = 0;
  clientSuite(t, {
    name: 'dev',
    stepTimeoutMs: 15_000,
    async workload(t, { registered }): Promise<Workload> {
      count += 1;
      const dir = tempDir(t);
      const anchorsFile = join(dir, 'anchors.pem');
      writeFileSync(anchorsFile, ca.bundlePem);
      const spiffeId = `spiffe://${TRUST_DOMAIN}/vm/dev-${count}`;
      const socketPath = join(dir, 'api.sock');
      const serve = (identities: Array<{ spiffeId: string }>) =>
        new DevWorkloadApiServer({ socketPath, ca, identities, ttlMs: 4000, rotateEveryMs: 300, log: silentLogger() });
      let server = serve(registered ? [{ spiffeId }] : []);
      await server.start();
      t.teardown(() => server.stop());
      return {
        socketPath,
        spiffeId,
        anchorsFile,
        register: () => server.setIdentities([{ spiffeId }]),
        kill: () => server.stop(),
        restart: async () => {
          server = serve([{ spiffeId }]);
          await server.start();
        },
      };
    },
  });
});
