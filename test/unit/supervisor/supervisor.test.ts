import t from 'tap';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Registry, type Counter, type Gauge } from 'prom-client';
import type { ComponentState } from '../../../src/component/component.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import type { ChildSpec } from '../../../src/supervisor/child.ts';
import { ChildSupervisor, type ChildChannel, type ChildExit, type ChildSupervisorOptions } from '../../../src/supervisor/supervisor.ts';
import { copyReadable, writeNodeLauncher } from '../../../src/util/run-as.ts';
import { readableTempDir, tempDir, waitFor } from '../../helpers/tmp.ts';
import { captureLogger, childFixture, processRuns } from './helpers.ts';

function spec(name: string, mode: string[], extra: Partial<ChildSpec> = {}): ChildSpec {
  return { name, command: process.execPath, args: [childFixture, ...mode], env: {}, stopGraceMs: 5000, ...extra };
}

interface TestContext {
  teardown(fn: () => unknown): void;
}

/** A supervisor that is stopped when the test ends, with a record of what it did. */
function supervise(t: TestContext, options: Partial<ChildSupervisorOptions> & { spec: ChildSpec }) {
  const registry = new Registry();
  const supervisor = new ChildSupervisor({ log: silentLogger(), registry, random: () => 0, ...options });
  const spawned: number[] = [];
  const exits: ChildExit[] = [];
  const states: ComponentState[] = [];
  supervisor.on('spawn', (pid: number) => spawned.push(pid));
  supervisor.on('exit', (exit: ChildExit) => exits.push(exit));
  supervisor.on('change', (s: ComponentState) => states.push(s));
  t.teardown(async () => {
    await supervisor.stop();
    const survivors = spawned.filter(processRuns);
    for (const pid of survivors) process.kill(pid, 'SIGKILL');
    if (survivors.length) throw new Error(`children ${survivors.join(', ')} outlived stop()`);
  });
  const metric = async (name: string) => {
    const values = (await (registry.getSingleMetric(name) as Counter | Gauge).get()).values;
    return values.find((v) => v.labels.child === options.spec.name)?.value;
  };
  return { supervisor, spawned, exits, states, metric, registry };
}

t.test('pipes each output line into the harness log with the child level and component', async (t) => {
  const { log, records } = captureLogger();
  const { supervisor } = supervise(t, { spec: spec('supervisor-logs', ['logs']), log });
  await supervisor.start();
  await waitFor('the last line of the child', () => records.find((r) => r.msg === 'after the long line'));
  const byMessage = (msg: string) => records.find((r) => r.msg === msg && r.stream !== undefined);

  const linkerd = byMessage('Admin interface on 127.0.0.1:4191');
  t.equal(linkerd?.level, 30, 'linkerd "INFO" becomes info');
  t.equal(linkerd?.component, 'supervisor-logs');
  t.equal(linkerd?.stream, 'stdout');
  t.same(linkerd?.child, { target: 'linkerd2_proxy' });

  const spire = byMessage('Agent SVID is about to expire');
  t.equal(spire?.level, 40, 'logrus "warning" becomes warn');
  t.same(spire?.child, { subsystem_name: 'manager' });

  t.equal(byMessage('plain message key')?.level, 50);
  t.equal(byMessage('just some text')?.level, 30, 'plain stdout is info');
  t.equal(byMessage('{"not":"a log record"}')?.level, 30, 'JSON without a level stays text');
  const stderr = byMessage('complaint on stderr');
  t.equal(stderr?.level, 40, 'plain stderr is warn');
  t.equal(stderr?.stream, 'stderr');

  const long = records.find((r) => r.truncated === true);
  t.equal(long?.msg.length, 16 * 1024, 'an overlong line is cut at the limit');
  t.ok(records.every((r) => !/^x+$/.test(r.msg) || r.truncated), 'the rest of the long line is dropped, not logged as a new line');

  const spawnEvent = records.find((r) => r.event === 'child-spawned');
  t.equal(spawnEvent?.pid, supervisor.pid());
});

t.test('restarts a child that exits, with growing backoff, counting restarts', async (t) => {
  const { supervisor, spawned, states, metric } = supervise(t, {
    spec: spec('supervisor-exit', ['exit', '3']),
    backoff: { baseMs: 200, maxMs: 10_000 },
    crashLoopThreshold: 100,
  });
  t.equal(await metric('mesh_harness_child_restarts_total'), 0, 'the series exists before the first restart');
  await supervisor.start();
  await waitFor('three restarts', () => (spawned.length >= 4 ? true : undefined));
  await supervisor.stop();
  const failures = states.filter((s) => s.phase === 'Degraded').map((s) => s.message);
  t.same(failures.slice(0, 3), ['exited with code 3, restarting in 0.1s', 'exited with code 3, restarting in 0.2s', 'exited with code 3, restarting in 0.4s']);
  t.ok((await metric('mesh_harness_child_restarts_total'))! >= 3);
  t.equal(await metric('mesh_harness_child_up'), 0);
  t.equal(supervisor.state().lastError, 'exited with code 3');
  t.equal(supervisor.state().phase, 'Stopped');
});

t.test('turns CrashLoop after repeated quick failures and keeps retrying slowly', async (t) => {
  const { supervisor, spawned, states } = supervise(t, {
    spec: spec('supervisor-crashloop', ['exit', '1']),
    backoff: { baseMs: 20, maxMs: 400 },
    crashLoopThreshold: 3,
    stableAfterMs: 60_000,
  });
  await supervisor.start();
  await waitFor('CrashLoop', () => (supervisor.state().phase === 'CrashLoop' ? true : undefined));
  const atCrashLoop = spawned.length;
  t.equal(atCrashLoop, 3, 'the third quick failure turns the phase');
  t.match(supervisor.state().message, /^exited with code 1; 3 quick failures in a row, restarting in 0\.2s$/, 'retries at the maximum backoff (half jitter)');
  t.equal(supervisor.state().ready, false);
  await waitFor('a retry while in CrashLoop', () => (spawned.length > atCrashLoop + 1 ? true : undefined));
  t.notOk(states.some((s) => s.phase === 'Ready' && s.since > states.find((x) => x.phase === 'CrashLoop')!.since), 'a child that keeps dying is never reported ready');
});

t.test('a child that ran for the stable period starts the backoff over', async (t) => {
  const { supervisor, spawned, states } = supervise(t, {
    spec: spec('supervisor-stable', ['exit', '1', '150']),
    backoff: { baseMs: 200, maxMs: 10_000 },
    crashLoopThreshold: 2,
    stableAfterMs: 30,
  });
  await supervisor.start();
  await waitFor('three exits', () => (spawned.length >= 4 ? true : undefined));
  const failures = states.filter((s) => s.phase === 'Degraded' || s.phase === 'CrashLoop').map((s) => `${s.phase}: ${s.message}`);
  t.same(failures.slice(0, 3), Array(3).fill('Degraded: exited with code 1, restarting in 0.1s'), 'every exit is the first one again; no CrashLoop');
});

t.test('a crash-looping child that finally runs becomes ready', async (t) => {
  const dir = tempDir(t);
  const readyFile = join(dir, 'ready');
  const { supervisor, states } = supervise(t, {
    spec: spec('supervisor-recover', ['fail-times', join(dir, 'count'), '3'], { env: { READY_FILE: readyFile } }),
    isReady: async () => existsSync(readyFile),
    readyPollMs: 20,
    backoff: { baseMs: 20, maxMs: 100 },
    crashLoopThreshold: 2,
    stableAfterMs: 60_000,
  });
  await supervisor.start();
  await waitFor('Ready after the crash loop', () => (supervisor.state().phase === 'Ready' ? true : undefined));
  t.ok(states.some((s) => s.phase === 'CrashLoop'), 'it was in CrashLoop before');
  t.match(supervisor.state().message, /^running and ready \(pid \d+\)$/);
  t.equal(supervisor.state().detail?.pid, supervisor.pid());
});

t.test('stop sends SIGTERM and waits for a graceful exit; no restart follows', async (t) => {
  const { log, records } = captureLogger();
  const { supervisor, spawned, exits } = supervise(t, { spec: spec('supervisor-stop', ['serve']), log, backoff: { baseMs: 20, maxMs: 100 } });
  await supervisor.start();
  const pid = supervisor.pid()!;
  await waitFor('the child to run', () => records.find((r) => r.msg.startsWith('serving pid')));
  await supervisor.stop();
  t.same(exits, [{ code: 0, signal: null }], 'the child drained and exited 0 on SIGTERM');
  t.ok(records.some((r) => r.msg === 'draining'));
  t.notOk(processRuns(pid));
  t.equal(supervisor.pid(), undefined);
  t.equal(supervisor.state().phase, 'Stopped');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(spawned.length, 1, 'nothing was restarted after stop');
});

t.test('stop kills a child that ignores SIGTERM once the grace period is over', async (t) => {
  const { log, records } = captureLogger();
  const { supervisor, exits } = supervise(t, { spec: spec('supervisor-stubborn', ['ignore-term'], { stopGraceMs: 300 }), log });
  await supervisor.start();
  await waitFor('the child to run', () => records.find((r) => r.msg === 'started'));
  await supervisor.stop();
  t.same(exits, [{ code: null, signal: 'SIGKILL' }]);
  t.ok(records.some((r) => r.msg === 'ignoring SIGTERM'), 'SIGTERM was delivered first');
  t.ok(records.some((r) => r.level === 40 && /did not exit within 300ms of SIGTERM; sending SIGKILL/.test(r.msg)));
});

t.test("what a crashed child left in its process group is killed before the restart", async (t) => {
  const { log, records } = captureLogger();
  const { supervisor, exits } = supervise(t, { spec: spec('supervisor-helper', ['helper-then-exit', '200']), log, backoff: { baseMs: 5000, maxMs: 5000 } });
  await supervisor.start();
  const line = await waitFor('the helper PID', () => records.find((r) => /^helper \d+$/.test(r.msg)));
  const helper = Number(line.msg.split(' ')[1]);
  t.teardown(() => {
    if (processRuns(helper)) process.kill(helper, 'SIGKILL');
  });
  await waitFor('the child to exit', () => (exits.length ? true : undefined));
  await waitFor('the helper to be gone', () => (processRuns(helper) ? undefined : true));
  t.notOk(processRuns(helper));
});

t.test('runs the child as the given uid and gid, with a clean environment and working directory', async (t) => {
  // The test runner injects its own variables into every child it sees spawned; a
  // variable of ours shows whether the harness environment leaks.
  process.env.SUPERVISOR_TEST_HARNESS_ONLY = 'secret';
  t.teardown(() => delete process.env.SUPERVISOR_TEST_HARNESS_ONLY);
  const { log, records } = captureLogger();
  // nobody cannot read the checkout when it sits in a 0700 directory: the child runs from a copy.
  const dir = readableTempDir(t, 'mh-supervisor-');
  copyReadable(childFixture, join(dir, 'supervisor-child.mjs'));
  const launcher = writeNodeLauncher(join(dir, 'supervisor-child'), join(dir, 'supervisor-child.mjs'));
  const { supervisor } = supervise(t, { spec: { name: 'supervisor-whoami', command: launcher, args: ['whoami'], uid: 65534, gid: 65534, env: { ONLY: 'this' }, stopGraceMs: 5000 }, log });
  await supervisor.start();
  const line = await waitFor('the identity line', () => records.find((r) => r.msg.startsWith('{"uid"')));
  const who = JSON.parse(line.msg) as { uid: number; gid: number; groups: number[]; cwd: string; env: string[] };
  t.equal(who.uid, 65534);
  t.equal(who.gid, 65534);
  t.same(who.groups, [65534], 'supplementary groups of the harness are dropped');
  t.equal(who.cwd, '/');
  t.ok(who.env.includes('ONLY'), 'the spec environment is there');
  t.notOk(who.env.includes('SUPERVISOR_TEST_HARNESS_ONLY'), 'the harness environment does not leak into the child');
});

t.test('readiness: Starting until isReady holds, Degraded when it stops holding', async (t) => {
  const dir = tempDir(t);
  const readyFile = join(dir, 'ready');
  const { supervisor } = supervise(t, {
    spec: spec('supervisor-ready', ['serve'], { env: { READY_FILE: readyFile } }),
    isReady: async () => existsSync(readyFile),
    readyPollMs: 20,
  });
  await supervisor.start();
  t.equal(supervisor.state().phase, 'Starting', 'spawned is not ready');
  await waitFor('Ready', () => (supervisor.state().phase === 'Ready' ? true : undefined));
  rmSync(readyFile);
  await waitFor('Degraded', () => (supervisor.state().phase === 'Degraded' ? true : undefined));
  t.equal(supervisor.state().ready, false);
  t.match(supervisor.state().message, /is running but no longer ready/);
});

t.test('restart(spec) replaces a running child without counting a crash', async (t) => {
  const { log, records } = captureLogger();
  const { supervisor, spawned, metric } = supervise(t, { spec: spec('supervisor-reload', ['serve'], { env: { MARKER: 'one' } }), log });
  await supervisor.start();
  await waitFor('first child', () => records.find((r) => /marker=one$/.test(r.msg)));
  const first = supervisor.pid()!;
  await supervisor.restart(spec('supervisor-reload', ['serve'], { env: { MARKER: 'two' } }));
  await waitFor('second child', () => records.find((r) => /marker=two$/.test(r.msg)));
  t.not(supervisor.pid(), first);
  t.notOk(processRuns(first), 'the old child is gone');
  t.equal(spawned.length, 2);
  t.equal(await metric('mesh_harness_child_restarts_total'), 0, 'a planned restart is not a crash');
  t.equal(await metric('mesh_harness_child_up'), 1);
});

t.test('a command that does not exist fails with a clear message and is retried', async (t) => {
  const { supervisor, spawned } = supervise(t, {
    spec: { name: 'supervisor-missing', command: '/nonexistent/linkerd2-proxy', args: [], env: {}, stopGraceMs: 1000 },
    backoff: { baseMs: 20, maxMs: 100 },
  });
  await supervisor.start();
  await waitFor('two attempts', () => (spawned.length >= 2 ? true : undefined));
  t.match(supervisor.state().lastError, /code 127 \(\/nonexistent\/linkerd2-proxy not found/);
});

t.test('start is idempotent and stop before start is harmless', async (t) => {
  const { supervisor, spawned } = supervise(t, { spec: spec('supervisor-idem', ['serve']) });
  await supervisor.stop();
  t.equal(supervisor.state().phase, 'Stopped');
  await Promise.all([supervisor.start(), supervisor.start()]);
  t.equal(spawned.length, 1);
});

t.test('with a channel, the child\'s stdin and stdout are the harness\'s to talk over, at every spawn; stderr is still logged', async (t) => {
  const { log, records } = captureLogger();
  const channels: ChildChannel[] = [];
  const script = 'echo "complaint on stderr" >&2; exec cat';
  const { supervisor, spawned } = supervise(t, { spec: { name: 'supervisor-channel', command: '/bin/sh', args: ['-c', script], env: {}, stopGraceMs: 1000 }, log, backoff: { baseMs: 50, maxMs: 50 }, channel: (c) => channels.push(c) });
  await supervisor.start();
  const echo = async (channel: ChildChannel, text: string) => {
    const answer = new Promise<string>((resolve) => channel.output.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    channel.input.write(`${text}\n`);
    return answer;
  };
  t.equal(channels.length, 1);
  t.equal(channels[0]!.pid, spawned[0]);
  t.equal(await echo(channels[0]!, 'ping'), 'ping\n', 'what goes in comes back on stdout');
  await waitFor('the stderr line in the log', () => records.find((r) => r.msg === 'complaint on stderr'));
  t.notOk(records.some((r) => r.msg === 'ping'), 'stdout is the channel\'s, not the log\'s');

  process.kill(spawned[0]!, 'SIGKILL');
  await waitFor('the restarted child\'s channel', () => (channels.length === 2 ? true : undefined), 10_000);
  t.equal(await echo(channels[1]!, 'again'), 'again\n', 'a restarted child gets a channel of its own');
});
