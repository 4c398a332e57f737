/**
 * The probe runner: the child process that makes the network checks as probes.execUser.
 * It is restarted when it dies, a check it was making fails at once rather than at its
 * timeout, a broken account shows in every check's message, and it runs only while a
 * network probe needs it.
 */
import t from 'tap';
import { resolveUser } from '../../../src/util/users.ts';
import { blackHole, TcpWorkload } from '../../helpers/workloads.ts';
import { waitFor } from '../../helpers/tmp.ts';
import { processRuns } from '../../unit/supervisor/helpers.ts';
import { probesConfig, startProbes } from './helpers.ts';

interface RunnerDetail {
  phase: string;
  message: string;
  pid?: number;
  uid?: number;
  gid?: number;
}

function runnerOf(probes: { state(): { detail?: Record<string, unknown> } }): RunnerDetail {
  return probes.state().detail!.runner as RunnerDetail;
}

t.test('a killed runner is restarted; the check it was making fails at once, saying why', async (t) => {
  const db = await TcpWorkload.start(t);
  const hole = await blackHole(t);
  const config = probesConfig(t, { probes: { workload: [
    { name: 'db', tcpSocket: { port: db.port }, periodSeconds: 1 },
    // A check that waits its whole 30 s on a black hole: in flight when the runner dies.
    { name: 'hole', httpGet: { port: hole.port }, periodSeconds: 60, timeoutSeconds: 30, failureThreshold: 1 },
  ] } });
  const { probes, registry } = await startProbes(t, config);
  const first = await waitFor('the runner to answer', () => {
    const runner = runnerOf(probes);
    return runner.pid && probes.probeStatuses().find((s) => s.name === 'db')?.lastResult === 'success' ? runner : undefined;
  }, 20_000);
  const nobody = await resolveUser('nobody');
  t.same([first.uid, first.gid], [nobody.uid, nobody.gid], 'it runs as probes.execUser');
  await waitFor('the black-hole check to be accepted', () => (hole.accepted() > 0 ? true : undefined), 10_000);

  process.kill(first.pid!, 'SIGKILL');
  const cut = await waitFor('the in-flight check to fail', () => probes.probeStatuses().find((s) => s.name === 'hole' && s.lastResult === 'failure'), 10_000);
  t.equal(cut.message, `GET http://127.0.0.1:${hole.port}/: the probe runner exited during the check; it is restarted`, 'failed when the runner died, not at the check\'s 30 s timeout');

  const second = await waitFor('a new runner', () => {
    const runner = runnerOf(probes);
    return runner.pid && runner.pid !== first.pid ? runner : undefined;
  }, 20_000);
  t.notOk(processRuns(first.pid!), 'the old one is gone');
  const checks = probes.probeStatuses().find((s) => s.name === 'db')!.checks;
  await waitFor('the next checks to pass through the new runner', () => {
    const db = probes.probeStatuses().find((s) => s.name === 'db')!;
    return db.checks > checks + 1 && db.lastResult === 'success' ? true : undefined;
  }, 20_000);
  t.equal(probes.readiness().ready, false, 'the hole probe keeps the workload unready');
  t.match(await registry.metrics(), /^mesh_harness_child_restarts_total\{child="probe-runner"\} 1$/m);
  t.equal(second.phase, 'Ready');
});

t.test('an account the runner may not use fails every network check with the reason, and heals on reload', async (t) => {
  const db = await TcpWorkload.start(t);
  const probes0 = [{ name: 'db', tcpSocket: { port: db.port }, periodSeconds: 1, failureThreshold: 1 }];
  const config = probesConfig(t, { proxy: { user: 'nobody', group: 'nogroup' }, probes: { workload: probes0 } });
  const { probes, next } = await startProbes(t, config);
  const failing = await waitFor('the check to fail', () => probes.probeStatuses().find((s) => s.lastResult === 'failure'), 10_000);
  t.match(failing.message, /^TCP 127\.0\.0\.1:\d+: not run: probes\.execUser "nobody" shares the proxy's uid or gid \(nobody\/nogroup\)/);
  t.equal(runnerOf(probes).phase, 'Failed');
  t.match(runnerOf(probes).message, /shares the proxy's uid or gid/);

  await (await probes.prepare(probesConfig(t, { proxy: { user: 'meshproxy', group: 'meshproxy' }, probes: { workload: probes0 } }))).commit();
  await next(true, 20_000);
  t.equal(runnerOf(probes).phase, 'Ready');
});

t.test('the runner runs only while a network probe does', async (t) => {
  const db = await TcpWorkload.start(t);
  const config = probesConfig(t, { probes: { workload: [{ name: 'true', exec: { command: ['true'] }, periodSeconds: 1 }] } });
  const { probes, next } = await startProbes(t, config);
  await next(true, 10_000);
  t.equal(runnerOf(probes).phase, 'Stopped', 'exec probes need no runner');
  probes.setClusterProbes({ probes: [{ name: 'db', tcpSocket: { port: db.port }, periodSeconds: 1 }] });
  const running = await waitFor('the runner', () => runnerOf(probes).pid, 10_000);
  probes.setClusterProbes({ probes: [] });
  await waitFor('the runner to stop', () => (runnerOf(probes).phase === 'Stopped' && !processRuns(running) ? true : undefined), 10_000);
  t.pass('stopped with the last network probe');
});
