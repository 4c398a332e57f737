import t from 'tap';
import { SKIP_WITHOUT_SPIRE, SpireServer } from '../../helpers/spire.ts';
import { clientSuite, type Workload } from './client-suite.ts';

// One SPIRE server for the file. Subtests that kill the agent or register late get their
// own agent (its own join token, so entries never reach another agent); the others share
// one, because a new agent takes about one sync period (5 s) to serve its first SVID.
t.test('identity client against real SPIRE', { skip: SKIP_WITHOUT_SPIRE }, async (t) => {
  const server = await SpireServer.start(t);
  let agents = 0;
  let shared: Promise<Workload> | undefined;

  const workload = async (registered: boolean): Promise<Workload> => {
    agents += 1;
    const agent = await server.newAgent(`a${agents}`);
    const spiffeId = `spiffe://${server.trustDomain}/vm/test-${agents}`;
    // 20 s TTL: SPIRE backdates by 10 s and renews at half-life, so a rotation every 5-10 s.
    const register = async (): Promise<void> => {
      await server.createEntry({ parentId: agent.spiffeId, spiffeId, selector: `unix:gid:${process.getgid!()}`, x509SvidTtl: 20 });
    };
    if (registered) await register();
    await agent.restart();
    return { socketPath: agent.socketPath, spiffeId, anchorsFile: server.anchorsFile, register, kill: () => agent.kill(), restart: () => agent.restart() };
  };

  clientSuite(t, {
    name: 'spire',
    stepTimeoutMs: 45_000,
    workload(_t, { registered, exclusive }) {
      if (exclusive || !registered) return workload(registered);
      shared ??= workload(true);
      return shared;
    },
  });
});
