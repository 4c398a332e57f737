import t from 'tap';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Registry, type Counter } from 'prom-client';
import { loadConfig } from '../../../src/config/load.ts';
import { IdentityComponent } from '../../../src/identity/component.ts';
import { spireAgentSupervisor } from '../../../src/identity/spire-agent.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { SKIP_WITHOUT_SPIRE, SpireServer } from '../../helpers/spire.ts';
import { tempDir } from '../../helpers/tmp.ts';
import { waitForState } from './client-suite.ts';

const STEP_MS = 45_000;

t.test('managed mode: a SIGKILLed spire-agent is restarted and the SVID comes back by itself', { skip: SKIP_WITHOUT_SPIRE }, async (t) => {
  const server = await SpireServer.start(t);
  const dir = tempDir(t, 'mh-managed-');
  const token = await server.joinToken();
  const tokenFile = join(dir, 'join-token');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const spiffeId = `spiffe://${server.trustDomain}/vm/managed`;
  await server.createEntry({ parentId: server.agentIdFor(token), spiffeId, selector: `unix:gid:${process.getgid!()}`, x509SvidTtl: 20 });

  const { config } = loadConfig({
    defaultPath: join(dir, 'absent.json'),
    env: {},
    sets: [
      'spire.mode=managed',
      'spire.serverAddress=127.0.0.1',
      `spire.serverPort=${server.port}`,
      `spire.trustDomain=${server.trustDomain}`,
      `spire.trustBundleFile=${server.anchorsFile}`,
      `spire.joinTokenFile=${tokenFile}`,
      `spire.dataDir=${join(dir, 'agent')}`,
      `identity.spiffeId=${spiffeId}`,
      `identity.trustAnchorsFile=${server.anchorsFile}`,
      `identity.workloadApiSocket=unix://${join(dir, 'run', 'api.sock')}`,
      'identity.expiryMargin=2s',
    ],
  });
  const registry = new Registry();
  const agent = spireAgentSupervisor({ config, log: silentLogger(), registry, supervisor: { backoff: { baseMs: 200, maxMs: 2000 }, readyPollMs: 200 } });
  const identity = new IdentityComponent({ config, log: silentLogger(), registry, backoff: { baseMs: 50, maxMs: 1000 } });
  t.teardown(async () => {
    await identity.stop();
    await agent.stop();
  });

  await agent.start();
  await identity.start();
  await waitForState(identity, 'first SVID', (s) => s.phase === 'Ready', STEP_MS);
  await new Promise<void>((resolve) => (agent.state().ready ? resolve() : agent.on('change', (s) => s.ready && resolve())));
  const firstPid = agent.pid();
  t.ok(firstPid, 'spire-agent runs');

  process.kill(firstPid!, 'SIGKILL');
  const down = await waitForState(identity, 'readiness to drop', (s) => !s.ready, STEP_MS);
  t.equal(down.phase, 'Degraded');

  const up = await waitForState(identity, 'SVID back', (s) => s.phase === 'Ready', STEP_MS);
  t.equal(up.ready, true);
  t.not(agent.pid(), firstPid, 'a new spire-agent process serves');
  const restarts = (await (registry.getSingleMetric('mesh_harness_child_restarts_total') as Counter).get()).values.find((v) => v.labels['child'] === 'spire-agent');
  t.equal(restarts?.value, 1, 'restarted once, by the supervisor');
});
