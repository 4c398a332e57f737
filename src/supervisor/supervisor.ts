import { execa } from 'execa';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Counter, Gauge, Registry } from 'prom-client';
import type { Readable, Writable } from 'node:stream';
import { METRIC, sharedCounter, sharedGauge } from '../admin/metrics.ts';
import { BaseComponent } from '../component/component.ts';
import { OperationQueue } from '../component/queue.ts';
import type { Logger } from '../log/logger.ts';
import { Backoff } from '../util/backoff.ts';
import { formatDuration } from '../util/duration.ts';
import { describeExit, findLaunchPaths, launchArgv, type ChildSpec } from './child.ts';
import { parseChildLine } from './child-log.ts';
import { LineSplitter } from './lines.ts';
import { findExecutable } from './which.ts';

export interface ChildExit {
  code: number | null;
  signal: string | null;
}

/**
 * What a readiness probe found: ready (true), not ready yet (false), or broken in a way
 * only a restart heals, with the reason (a proxy whose identity task died still answers
 * its /ready; waiting would never help).
 */
export type Readiness = boolean | { restart: string };

export interface ChildSupervisorOptions {
  spec: ChildSpec;
  log: Logger;
  registry: Registry;
  /**
   * Whether the running child serves. While it starts, polled every 20 ms for the first
   * 10 s, then backing off to `readyPollMs` (a child ready after 10 ms or 1 s is seen
   * within 20 ms; one stuck for minutes is not polled 50 times a second). Without it a
   * spawned child counts as ready.
   */
  isReady?: () => Promise<Readiness>;
  /** Slowest poll interval while the child starts. */
  readyPollMs?: number;
  /**
   * Poll interval once the child is ready. A crash is seen at once through the exit event,
   * so this only has to catch a child that hangs while alive; polling it as fast as during
   * start-up would cost CPU all day for nothing.
   */
  steadyPollMs?: number;
  /** Delay before restarting a child that exited. */
  backoff?: { baseMs: number; maxMs: number };
  /** A child that ran this long was healthy: its next exit starts the backoff over. */
  stableAfterMs?: number;
  /** Exits in a row that each came within `stableAfterMs` of the start, before the phase turns CrashLoop. */
  crashLoopThreshold?: number;
  random?: () => number;
  /**
   * For a child the harness talks to: its stdin and stdout become a channel handed to this
   * callback at each spawn (stdout is then not logged; stderr still is).
   */
  channel?: (channel: ChildChannel) => void;
}

/** The pipes to a child that speaks a protocol on stdin and stdout. */
export interface ChildChannel {
  pid: number;
  input: Writable;
  output: Readable;
}

/** One spawned child process. */
interface Run {
  spec: ChildSpec;
  pid: number;
  spawnedAt: number;
  exited: Promise<ChildExit>;
  done: boolean;
  /** Ran for `stableAfterMs`; its exit is not a quick failure. */
  stable: boolean;
  /** The harness asked it to go (stop or restart): its exit is not a crash. */
  stopping: boolean;
  /** The readiness probe found it broken; why it is being restarted. */
  unhealthy?: string;
  /** The child's last few output lines, quoted when it exits before it became stable. */
  lastLines: string[];
  /** Cancels the readiness poll and the stability timer. */
  abort: AbortController;
}

const DEFAULTS = {
  readyPollMs: 500,
  /**
   * Readiness is polled this often for the first `fastReadyWindowMs` after a spawn (a
   * proxy is ready milliseconds to a second or two after it starts, and every poll
   * interval is added to start-up), then backs off, doubling up to readyPollMs, for a
   * child that takes long.
   */
  fastReadyPollMs: 20,
  fastReadyWindowMs: 10_000,
  steadyPollMs: 5000,
  backoff: { baseMs: 500, maxMs: 30_000 },
  stableAfterMs: 30_000,
  crashLoopThreshold: 5,
};

/** How long an exit waits for the child's output pipes to end. */
const OUTPUT_SETTLE_MS = 200;
/** Output lines of a child kept to explain its exit. */
const LAST_LINES = 3;
const LAST_LINE_CHARS = 300;

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
}

/**
 * Keeps one child process running: spawns it (as the configured user, in its own process
 * group, armed to die with the harness), pipes its output into the harness log, polls its
 * readiness, restarts it with backoff when it exits, and stops it with SIGTERM then
 * SIGKILL after the grace period.
 *
 * Events: 'spawn' (pid), 'exit' ({ code, signal }), and 'change' from BaseComponent.
 */
export class ChildSupervisor extends BaseComponent {
  private spec: ChildSpec;
  private readonly isReady: (() => Promise<Readiness>) | undefined;
  private readonly channel: ((channel: ChildChannel) => void) | undefined;
  private readonly readyPollMs: number;
  private readonly steadyPollMs: number;
  private readonly stableAfterMs: number;
  private readonly crashLoopThreshold: number;
  private readonly backoff: Backoff;
  /** Once in a crash loop, retries come at the maximum delay (still jittered). */
  private readonly crashLoopBackoff: Backoff;
  private readonly restartsTotal: Counter<'child'>;
  private readonly up: Gauge<'child'>;

  private run: Run | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Whether the child should be running (false before start and after stop). */
  private wanted = false;
  private quickFailures = 0;
  private restarts = 0;
  /** start/stop/restart run one at a time, in call order. */
  private readonly operations = new OperationQueue();

  constructor(options: ChildSupervisorOptions) {
    super(options.spec.name, options.log.child({ component: options.spec.name }));
    this.spec = options.spec;
    this.isReady = options.isReady;
    this.channel = options.channel;
    this.readyPollMs = options.readyPollMs ?? DEFAULTS.readyPollMs;
    this.steadyPollMs = Math.max(this.readyPollMs, options.steadyPollMs ?? DEFAULTS.steadyPollMs);
    this.stableAfterMs = options.stableAfterMs ?? DEFAULTS.stableAfterMs;
    this.crashLoopThreshold = options.crashLoopThreshold ?? DEFAULTS.crashLoopThreshold;
    const { baseMs, maxMs } = options.backoff ?? DEFAULTS.backoff;
    this.backoff = new Backoff({ baseMs, maxMs, ...(options.random ? { random: options.random } : {}) });
    this.crashLoopBackoff = new Backoff({ baseMs: maxMs, maxMs, ...(options.random ? { random: options.random } : {}) });
    this.restartsTotal = sharedCounter(options.registry, METRIC.childRestarts, 'Times a supervised child was restarted after it exited on its own.', ['child']);
    this.up = sharedGauge(options.registry, METRIC.childUp, 'Whether a supervised child process is running (1) or not (0).', ['child']);
    this.restartsTotal.inc({ child: this.name }, 0);
    this.up.set({ child: this.name }, 0);
  }

  /** Spawns the child; resolves once it is spawned, not once it is ready. */
  start(): Promise<void> {
    return this.serially(async () => {
      if (this.wanted) return;
      this.wanted = true;
      this.backoff.reset();
      this.crashLoopBackoff.reset();
      this.quickFailures = 0;
      this.spawn();
    });
  }

  /** SIGTERM, up to `stopGraceMs` to exit, then SIGKILL; resolves when the child is gone. No restart follows. */
  stop(): Promise<void> {
    return this.serially(async () => {
      this.wanted = false;
      this.cancelRestart();
      const run = this.run;
      if (run) {
        this.setState('Stopping', { message: `stopping pid ${run.pid} (SIGTERM, up to ${formatDuration(run.spec.stopGraceMs)} to exit)` });
        await this.terminate(run);
      }
      this.setState('Stopped', { message: 'stopped', detail: { pid: undefined } });
    });
  }

  /** Graceful stop, then start with `spec` (or the current one): how a configuration reload applies. */
  restart(spec?: ChildSpec): Promise<void> {
    return this.serially(async () => {
      this.cancelRestart();
      if (spec) this.spec = spec;
      const run = this.run;
      if (run) {
        this.setState('Stopping', { message: `restarting: stopping pid ${run.pid}` });
        await this.terminate(run);
      }
      this.backoff.reset();
      this.crashLoopBackoff.reset();
      this.quickFailures = 0;
      this.wanted = true;
      this.spawn();
    });
  }

  pid(): number | undefined {
    return this.run?.pid;
  }

  private serially(operation: () => Promise<void>): Promise<void> {
    return this.operations.run(operation);
  }

  private cancelRestart(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
  }

  private spawn(): void {
    const spec = this.spec;
    const paths = findLaunchPaths();
    if (!paths) {
      this.failed('setpriv not found on PATH (package util-linux); it starts children so they cannot outlive the harness');
      return;
    }
    const argv = launchArgv(spec, process.pid, paths);
    const subprocess = execa(argv.file, argv.args, {
      env: spec.env,
      extendEnv: false,
      cwd: spec.cwd ?? '/',
      detached: true,
      stdin: this.channel ? 'pipe' : 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      cleanup: false,
      forceKillAfterDelay: false,
    });
    const pid = subprocess.pid;
    if (pid === undefined) {
      // The result promise never rejects (reject: false); a failed spawn resolves with the reason.
      void subprocess.then((result) => this.failed(`cannot start ${spec.command}: ${result.shortMessage ?? 'spawn failed'}`));
      return;
    }
    const lastLines: string[] = [];
    const logged = this.channel ? [subprocess.stderr] : [subprocess.stdout, subprocess.stderr];
    const streamsEnded = Promise.all(logged.map((stream) => (stream ? this.pipeLines(stream, stream === subprocess.stdout ? 'stdout' : 'stderr', pid, lastLines) : undefined)));
    // 'exit' can come before the last lines are read; those lines are what explains a child
    // that died at once, so the exit waits for the pipes to end (briefly: a grandchild may hold them).
    const exited = new Promise<ChildExit>((resolve) =>
      subprocess.once('exit', (code, signal) => {
        const settle = new AbortController();
        void Promise.race([streamsEnded, sleep(OUTPUT_SETTLE_MS, undefined, { signal: settle.signal }).catch(() => undefined)]).then(() => {
          settle.abort();
          resolve({ code, signal });
        });
      }),
    );

    const run: Run = { spec, pid, spawnedAt: Date.now(), exited, done: false, stable: false, stopping: false, abort: new AbortController(), lastLines };
    this.run = run;
    void exited.then((exit) => this.onExit(run, exit));

    this.up.set({ child: this.name }, 1);
    const startedAt = new Date(run.spawnedAt).toISOString();
    const detail = { pid, startedAt, restarts: this.restarts, command: spec.command };
    const crashLooping = this.quickFailures >= this.crashLoopThreshold;
    if (crashLooping) {
      this.setState('CrashLoop', { message: `retrying after ${this.quickFailures} quick failures in a row: started pid ${pid}`, detail });
    } else if (this.isReady) {
      this.setState('Starting', { message: `started pid ${pid}, waiting for it to become ready`, detail });
    } else {
      this.setState('Ready', { message: `running (pid ${pid})`, detail });
    }
    this.log.info({ event: 'child-spawned', pid, command: spec.command, args: spec.args, uid: spec.uid, gid: spec.gid }, `${this.name}: spawned pid ${pid}`);
    if (this.channel && subprocess.stdin && subprocess.stdout) {
      // A child that exits closes its end; writes after that must not throw in the harness.
      subprocess.stdin.on('error', () => undefined);
      this.channel({ pid, input: subprocess.stdin, output: subprocess.stdout });
    }
    this.emit('spawn', pid);

    void sleep(this.stableAfterMs, undefined, { signal: run.abort.signal }).then(
      () => this.onStable(run),
      () => undefined,
    );
    if (this.isReady) void this.pollReadiness(run, this.isReady);
  }

  private onStable(run: Run): void {
    if (run.done) return;
    run.stable = true;
    this.backoff.reset();
    this.crashLoopBackoff.reset();
    this.quickFailures = 0;
    if (!this.isReady && this.state().phase === 'CrashLoop') this.setState('Ready', { message: `running (pid ${run.pid})` });
  }

  private async pollReadiness(run: Run, isReady: () => Promise<Readiness>): Promise<void> {
    const fastPollMs = Math.min(DEFAULTS.fastReadyPollMs, this.readyPollMs);
    const starting = new Backoff({ baseMs: fastPollMs, maxMs: this.readyPollMs, random: () => 1 });
    const startingDelay = () => (Date.now() - run.spawnedAt < DEFAULTS.fastReadyWindowMs ? fastPollMs : starting.next());
    while (!run.done && !run.stopping) {
      let readiness: Readiness;
      try {
        readiness = await isReady();
      } catch {
        readiness = false;
      }
      if (run.done || run.stopping || this.run !== run) return;
      if (typeof readiness === 'object') {
        this.restartUnhealthy(run, readiness.restart);
        return;
      }
      const phase = this.state().phase;
      if (readiness && phase !== 'Ready') this.setState('Ready', { message: `running and ready (pid ${run.pid})` });
      else if (!readiness && phase === 'Ready') this.setState('Degraded', { message: `pid ${run.pid} is running but no longer ready` });
      if (this.state().phase === 'Ready') starting.reset();
      try {
        await sleep(this.state().phase === 'Ready' ? this.steadyPollMs : startingDelay(), undefined, { signal: run.abort.signal });
      } catch {
        return;
      }
    }
  }

  /**
   * A running child the probe found broken: stopped like any other (SIGTERM, then SIGKILL
   * after the grace period), and its exit is handled as a crash, with the probe's reason,
   * so the restart backoff and the crash-loop count apply.
   */
  private restartUnhealthy(run: Run, reason: string): void {
    run.unhealthy = reason;
    this.log.warn({ event: 'child-unhealthy', pid: run.pid, reason }, `${this.name}: pid ${run.pid} is running but broken (${reason}); restarting it`);
    this.setState('Degraded', { message: `pid ${run.pid}: ${reason}; restarting it`, lastError: reason });
    void this.terminate(run, { expected: false });
  }

  /** Logs each line of the child's output, keeps the last few in `lastLines`; resolves when the stream ends. */
  private pipeLines(stream: Readable, name: 'stdout' | 'stderr', pid: number, lastLines: string[]): Promise<void> {
    const splitter = new LineSplitter((line) => {
      const record = parseChildLine(line, name);
      const fields = { stream: name, pid, ...(record.fields ? { child: record.fields } : {}), ...(line.truncated ? { truncated: true } : {}) };
      this.log[record.level](fields, record.message);
      if (record.message.trim()) {
        lastLines.push(record.message.trim().slice(0, LAST_LINE_CHARS));
        if (lastLines.length > LAST_LINES) lastLines.shift();
      }
    });
    stream.on('data', (chunk: Buffer) => splitter.push(chunk));
    stream.on('error', () => undefined);
    return new Promise((resolve) => {
      stream.on('end', () => {
        splitter.end();
        resolve();
      });
      stream.on('close', () => resolve());
    });
  }

  /**
   * Signals the child's process group, so helpers it started go with it; the child alone
   * when it left its group. `groupOnly` once the child has been reaped: its PID may
   * already belong to someone else, while a process group ID is not reused while members
   * remain.
   */
  private signal(pid: number, signal: NodeJS.Signals, groupOnly = false): void {
    try {
      process.kill(-pid, signal);
    } catch {
      if (groupOnly) return;
      try {
        process.kill(pid, signal);
      } catch {
        // Already gone.
      }
    }
  }

  /** `expected: false` for a stop the harness does not ask for as such: the exit then counts as a crash. */
  private async terminate(run: Run, { expected = true } = {}): Promise<void> {
    if (expected) run.stopping = true;
    run.abort.abort();
    if (run.done) return;
    this.signal(run.pid, 'SIGTERM');
    const graceTimer = new AbortController();
    const grace = sleep(run.spec.stopGraceMs, 'grace-expired' as const, { signal: graceTimer.signal });
    const outcome = await Promise.race([run.exited.then(() => 'exited' as const), grace]);
    graceTimer.abort();
    grace.catch(() => undefined);
    if (outcome === 'grace-expired') {
      this.log.warn({ pid: run.pid, graceMs: run.spec.stopGraceMs }, `${this.name}: pid ${run.pid} did not exit within ${formatDuration(run.spec.stopGraceMs)} of SIGTERM; sending SIGKILL`);
      if (!run.done) this.signal(run.pid, 'SIGKILL');
      await run.exited;
    }
  }

  private onExit(run: Run, exit: ChildExit): void {
    run.done = true;
    run.abort.abort();
    if (this.run === run) this.run = undefined;
    // Whatever the child left behind in its group goes too: a restarted agent must not
    // race its own leftovers.
    this.signal(run.pid, 'SIGKILL', true);
    this.up.set({ child: this.name }, 0);
    let reason = run.unhealthy ? `restarted: ${run.unhealthy}` : describeExit(exit, run.spec.command);
    // A child that dies before it ever ran stably says why in its last words; an operator
    // should not have to go to the journal to learn that the binary could not be read.
    if (!run.unhealthy && !run.stopping && !run.stable && run.lastLines.length) reason += `; last output: ${run.lastLines.map((l) => JSON.stringify(l)).join(' / ')}`;
    const uptimeMs = Date.now() - run.spawnedAt;
    this.log.info({ event: 'child-exited', pid: run.pid, code: exit.code, signal: exit.signal, uptimeMs, requested: run.stopping }, `${this.name}: pid ${run.pid} ${reason}`);
    this.emit('exit', { code: exit.code, signal: exit.signal });
    if (run.stopping || !this.wanted) return;
    if (!run.stable) this.quickFailures += 1;
    this.scheduleRestart(reason, { pid: run.pid, code: exit.code, signal: exit.signal, uptimeMs, at: new Date().toISOString() });
  }

  /** A start attempt that did not even produce a process. */
  private failed(reason: string): void {
    if (!this.wanted) return;
    this.quickFailures += 1;
    this.scheduleRestart(reason, { at: new Date().toISOString() });
  }

  private scheduleRestart(reason: string, lastExit: Record<string, unknown>): void {
    const crashLoop = this.quickFailures >= this.crashLoopThreshold;
    const delay = crashLoop ? this.crashLoopBackoff.next() : this.backoff.next();
    const detail = { pid: undefined, lastExit: { ...lastExit, reason } };
    if (crashLoop) {
      this.setState('CrashLoop', { message: `${reason}; ${this.quickFailures} quick failures in a row, restarting in ${seconds(delay)}`, lastError: reason, detail });
    } else {
      // Degraded, not Failed: the supervisor keeps retrying by itself.
      this.setState('Degraded', { message: `${reason}, restarting in ${seconds(delay)}`, lastError: reason, detail });
    }
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.wanted) return;
      this.restarts += 1;
      this.restartsTotal.inc({ child: this.name });
      this.spawn();
    }, delay);
  }
}
