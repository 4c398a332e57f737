/**
 * The probes component against real listeners on loopback: a switchable HTTP server, a
 * TCP listener that closes, a grpc-js server with the standard health service, exec
 * probes run as an unprivileged user, and a black hole that accepts and never answers.
 */
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveUser } from '../../../src/util/users.ts';
import { blackHole, grpcHealthServer, httpWorkload, TcpWorkload } from '../../helpers/workloads.ts';
import { tempDir, waitFor } from '../../helpers/tmp.ts';
import { processRuns } from '../../unit/supervisor/helpers.ts';
import { probesConfig, startProbes } from './helpers.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A directory the exec probe's user (nobody) can reach, with a world-writable `out/`. */
function execDir(t: Parameters<typeof tempDir>[0]): { dir: string; out: string } {
  const dir = tempDir(t, 'mh-probes-');
  chmodSync(dir, 0o755);
  const out = join(dir, 'out');
  mkdirSync(out);
  chmodSync(out, 0o777);
  return { dir, out };
}

t.test('httpGet: a workload that starts answering 503 goes not ready within period x failureThreshold (+1 s), and back after successThreshold successes', async (t) => {
  const web = await httpWorkload(t);
  const period = 1;
  const failureThreshold = 2;
  const successThreshold = 2;
  const config = probesConfig(t, { probes: { workload: [{ name: 'web', httpGet: { port: web.port, path: '/healthz' }, periodSeconds: period, failureThreshold, successThreshold }] } });
  const { probes, next, registry } = await startProbes(t, config);
  t.equal(probes.readiness().ready, false, 'not ready before the first successes, as a Pod');
  await next(true, 10_000);
  t.equal(probes.state().phase, 'Ready');

  web.served.set(503, 0);
  web.status = 503;
  const down = await next(false, period * failureThreshold * 1000 + 1000);
  t.equal(down.reason, 'ProbeFailed');
  t.match(down.message, /^GET http:\/\/127\.0\.0\.1:\d+\/healthz: 503 after \d+ ms \(probe web\)$/);
  t.ok((web.served.get(503) ?? 0) >= failureThreshold, `${web.served.get(503)} failures before the transition, not fewer than failureThreshold`);
  t.equal(probes.state().phase, 'Degraded');
  t.equal(probes.state().ready, true, 'the harness itself stays ready: READY=1 never waits for the application');

  web.served.set(200, 0);
  web.status = 200;
  const up = await next(true, period * successThreshold * 1000 + 1000);
  t.equal(up.reason, undefined);
  t.ok((web.served.get(200) ?? 0) >= successThreshold, 'back only after successThreshold successes');
  const status = probes.probeStatuses()[0]!;
  t.equal(status.name, 'web');
  t.equal(status.lastResult, 'success');
  t.ok(status.consecutiveSuccesses >= 2);
  t.equal(status.consecutiveFailures, 0);
  t.type(status.lastLatencyMs, 'number');
  t.match(web.headers[0]?.['user-agent'], /mesh-harness-probe/);

  const metrics = await registry.metrics();
  t.match(metrics, /mesh_harness_probe_passing\{probe="web",source="local"\} 1/);
  t.match(metrics, /mesh_harness_probe_checks_total\{probe="web",source="local",result="failure"\} [2-9]/);
  t.match(metrics, /mesh_harness_probe_duration_seconds_count\{probe="web",source="local"\} \d+/);
  t.match(metrics, /mesh_harness_workload_readiness_transitions_total\{ready="false"\} 1/);
  t.match(metrics, /mesh_harness_workload_ready 1/);
});

t.test('tcpSocket: the listener closed -> not ready; reopened -> ready', async (t) => {
  const db = await TcpWorkload.start(t);
  const config = probesConfig(t, { probes: { workload: [{ tcpSocket: { port: db.port }, periodSeconds: 1, failureThreshold: 1 }] } });
  const { next } = await startProbes(t, config);
  await next(true, 10_000);
  await db.close();
  const down = await next(false, 1 * 1 * 1000 + 1000);
  t.match(down.message, /^TCP 127\.0\.0\.1:\d+: connection refused after \d+ ms \(probe probes\.workload\[0\]\)$/);
  await db.reopen(t);
  await next(true, 2000);
});

t.test('grpc: a real grpc-js health server switching to NOT_SERVING and back', async (t) => {
  const server = await grpcHealthServer(t);
  server.statuses.set('payments', 'SERVING');
  const config = probesConfig(t, { probes: { workload: [
    { name: 'whole', grpc: { port: server.port }, periodSeconds: 1, failureThreshold: 2 },
    { name: 'payments', grpc: { port: server.port, service: 'payments' }, periodSeconds: 1, failureThreshold: 1 },
  ] } });
  const { probes, next } = await startProbes(t, config);
  await next(true, 10_000);
  server.statuses.set('', 'NOT_SERVING');
  const down = await next(false, 1 * 2 * 1000 + 1000);
  t.match(down.message, /^gRPC health 127\.0\.0\.1:\d+: NOT_SERVING after \d+ ms \(probe whole\)$/);
  server.statuses.set('', 'SERVING');
  await next(true, 2000);
  server.statuses.delete('payments');
  const unknown = await next(false, 2000);
  t.match(unknown.message, /service "payments" is unknown to the server/);
  t.ok(probes.probeStatuses().every((s) => s.checks >= 2));
});

t.test('exec (local, allowed): runs as the exec user with a clean environment and no way back to privileges', async (t) => {
  const { dir, out } = execDir(t);
  process.env.MESH_HARNESS_TEST_SECRET = 'must-not-leak';
  t.teardown(() => delete process.env.MESH_HARNESS_TEST_SECRET);
  const script = `id -u > ${out}/uid; id -G > ${out}/groups; env > ${out}/env; grep NoNewPrivs /proc/self/status > ${out}/nnp; pwd > ${out}/cwd; test -e ${dir}/healthy`;
  const config = probesConfig(t, { probes: { workload: [{ name: 'healthy-file', exec: { command: ['sh', '-c', script] }, periodSeconds: 1, failureThreshold: 1 }] } });
  writeFileSync(join(dir, 'healthy'), '');
  const { next } = await startProbes(t, config);
  await next(true, 10_000);
  const nobody = await resolveUser('nobody');
  t.equal(readFileSync(join(out, 'uid'), 'utf8').trim(), String(nobody.uid), 'runs as probes.execUser (nobody)');
  t.equal(readFileSync(join(out, 'groups'), 'utf8').trim(), String(nobody.gid), 'with its primary group only (no supplementary groups of the harness)');
  const env = readFileSync(join(out, 'env'), 'utf8');
  t.notMatch(env, /MESH_HARNESS_TEST_SECRET|must-not-leak/, 'nothing of the harness environment');
  t.match(readFileSync(join(out, 'nnp'), 'utf8'), /NoNewPrivs:\s+1/);
  t.equal(readFileSync(join(out, 'cwd'), 'utf8').trim(), '/');

  rmSync(join(dir, 'healthy'));
  const down = await next(false, 1 * 1 * 1000 + 1000);
  t.match(down.message, /^exec \["sh","-c",".*"\]: exit 1 after \d+ ms \(probe healthy-file\)$/);
  writeFileSync(join(dir, 'healthy'), '');
  await next(true, 2000);
});

t.test('exec: a command that hangs is cut at its timeout with its whole process group; output is truncated', async (t) => {
  const { out } = execDir(t);
  const config = probesConfig(t, { probes: { workload: [
    { name: 'hangs', exec: { command: ['sh', '-c', `sleep 60 & echo $! > ${out}/bg; echo $$ > ${out}/fg; sleep 60`] }, periodSeconds: 30, timeoutSeconds: 1, failureThreshold: 1 },
    { name: 'chatty', exec: { command: ['sh', '-c', 'head -c 5000 /dev/zero | tr "\\0" x; exit 3'] }, periodSeconds: 30, failureThreshold: 1 },
  ] } });
  const { probes } = await startProbes(t, config);
  const hangs = await waitFor('the hanging exec probe to fail', () => probes.probeStatuses().find((s) => s.name === 'hangs' && s.lastResult === 'failure'), 10_000);
  t.match(hangs.message, /: no answer within 1 s \(timeoutSeconds\)$/);
  const pids = ['bg', 'fg'].map((f) => Number(readFileSync(join(out, f), 'utf8')));
  for (const pid of pids) await waitFor(`pid ${pid} of the timed-out probe to be gone`, () => (processRuns(pid) ? undefined : true), 5000);
  const chatty = await waitFor('the chatty probe', () => probes.probeStatuses().find((s) => s.name === 'chatty' && s.lastResult === 'failure'), 10_000);
  t.match(chatty.message, /exit 3 after \d+ ms: x{200}\.\.\. \(truncated\)$/);
  t.ok(chatty.message.length < 400, `message is ${chatty.message.length} characters`);
});

t.test('exec probes from the cluster never run on a VM that does not allow them; the refusal is reported', async (t) => {
  const { out } = execDir(t);
  const marker = join(out, 'marker');
  const db = await TcpWorkload.start(t);
  const config = probesConfig(t, { probes: { workload: [{ name: 'db', tcpSocket: { port: db.port }, periodSeconds: 1 }] } });
  const { probes, next, transitions } = await startProbes(t, config);
  await next(true, 10_000);
  const since = transitions.length;
  const refusals = probes.setClusterProbes({ group: 'default/web', probes: [{ name: 'touch', exec: { command: ['touch', marker] }, periodSeconds: 1 }] });
  t.same(refusals.map((r) => [r.probe, r.reason]), [['touch', 'ExecNotAllowed']]);
  const down = await next(false, 2000, since);
  t.equal(down.reason, 'ProbeRefused', 'a refused probe counts as failing: the cluster asked for a check this VM will not run');
  t.match(down.message, /^exec probe touch of ExternalGroup default\/web refused: this VM does not run exec probes from the cluster \(set probes\.allowClusterExec to true/);
  await sleep(3500);
  t.notOk(existsSync(marker), 'the command never ran');
  const state = probes.state();
  t.match(state.message, /refused/);
  t.same((state.detail?.refusals as Array<{ probe: string }>).map((r) => r.probe), ['touch']);
  t.same(probes.probeStatuses().map((s) => s.name), ['db'], 'the local probe keeps running; the refused one is not scheduled');
  t.same(probes.reportedProbes().map((p) => [p.name, p.success]), [['db', true], ['touch', false]], 'what the registration side reports carries the refusal');

  // The same group on a VM that allows it: the marker appears (so the check above could fail).
  const beforeUpdate = transitions.length;
  await probes.update(probesConfig(t, { probes: { workload: config.probes.workload, allowClusterExec: true } }));
  await waitFor('the allowed cluster exec probe to run', () => (existsSync(marker) ? true : undefined), 5000);
  t.same(probes.refusals(), []);
  await next(true, 5000, beforeUpdate);
});

t.test('a black-holed port fails by its timeout while the other probes keep their schedule', async (t) => {
  const hole = await blackHole(t);
  const db = await TcpWorkload.start(t);
  const config = probesConfig(t, { probes: { workload: [
    { name: 'hole', httpGet: { port: hole.port }, periodSeconds: 1, timeoutSeconds: 2, failureThreshold: 1 },
    { name: 'steady', tcpSocket: { port: db.port }, periodSeconds: 1 },
  ] } });
  const { probes } = await startProbes(t, config);
  const started = performance.now();
  await sleep(5500);
  const hole1 = probes.probeStatuses().find((s) => s.name === 'hole')!;
  const steady = probes.probeStatuses().find((s) => s.name === 'steady')!;
  t.equal(hole1.lastResult, 'failure');
  t.match(hole1.message, /^GET http:\/\/127\.0\.0\.1:\d+\/: no answer within 2 s \(timeoutSeconds\)$/);
  t.ok(hole1.lastLatencyMs! >= 1900, 'cut by the timeout, not by anything earlier');
  t.ok(hole.accepted() >= 2, 'the connections were accepted (a black hole, not a closed port)');
  const expected = Math.floor((performance.now() - started) / 1000);
  t.ok(steady.checks >= expected - 1, `the steady probe ran ${steady.checks} checks in ${expected} periods`);
  t.equal(steady.lastResult, 'success');
  t.match(probes.readiness().message, /no answer within 2 s \(timeoutSeconds\) \(probe hole\)$/);
});

t.test('ports by name resolve against workload.ports and the group template; an unknown name is a clear failure', async (t) => {
  const web = await httpWorkload(t);
  const db = await TcpWorkload.start(t);
  const config = probesConfig(t, {
    workload: { ports: [{ port: web.port, name: 'http' }] },
    probes: { workload: [{ name: 'web', httpGet: { port: 'http', path: '/' }, periodSeconds: 1 }] },
  });
  const { probes, next } = await startProbes(t, config);
  await next(true, 10_000);
  probes.setClusterProbes({ probes: [{ name: 'db', tcpSocket: { port: 'postgres' }, periodSeconds: 1, failureThreshold: 1 }], templatePorts: [{ port: db.port, name: 'postgres' }] });
  await sleep(1500);
  t.equal(probes.readiness().ready, true, 'the template port name resolved');
  probes.setClusterProbes({ probes: [{ name: 'db', tcpSocket: { port: 'mysql' }, periodSeconds: 1, failureThreshold: 1 }], templatePorts: [{ port: db.port, name: 'postgres' }] });
  const down = await next(false, 3000);
  t.match(down.message, /^TCP 127\.0\.0\.1:mysql: port name "mysql" is neither in workload\.ports nor in the group template's ports/);
});

