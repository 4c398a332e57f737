/**
 * The harness's side of the probe runner (main.ts): starts it as a supervised child
 * running as probes.execUser (restarted with backoff when it exits), sends it each network
 * check and matches the replies. The probe workers keep the schedule and thresholds; a
 * check the runner cannot answer (not started, exited mid-check, silent) fails with a
 * message saying why, like any other failing check.
 */
import { rmSync } from 'node:fs';
import type { Registry } from 'prom-client';
import type { Phase } from '../../component/component.ts';
import { OperationQueue } from '../../component/queue.ts';
import type { Logger } from '../../log/logger.ts';
import { LineSplitter } from '../../supervisor/lines.ts';
import { ChildSupervisor, type ChildChannel } from '../../supervisor/supervisor.ts';
import { findExecutable } from '../../supervisor/which.ts';
import { accessProblem } from '../../util/access.ts';
import { bundlePath, temporaryBundleCopy } from '../../util/bundle.ts';
import { EXEC_ENV, type ExecAccount } from '../exec.ts';
import type { NetworkCheck } from '../network.ts';
import type { CheckContext, CheckResult } from '../result.ts';
import { describeHandler } from '../spec.ts';
import { parseReply, type RunnerRequest } from './protocol.ts';

/** The runner's bundle (scripts/build.mjs) and its name as a supervised child. */
const RUNNER_ENTRY = 'probe-runner';

/** The exec probes' clean environment: nothing of the harness's (no MESH_HARNESS_*, no NODE_OPTIONS). */
const RUNNER_ENV = { ...EXEC_ENV };
/** How long a check waits for the runner to come up (Node's start, a restart after a crash). */
const START_WAIT_MS = 10_000;
/** How long past its own timeout a check waits for the runner's answer (which carries the timeout itself). */
const ANSWER_SLACK_MS = 2000;

export interface ProbeRunnerOptions {
  log: Logger;
  registry: Registry;
  /** The account to run as, checked as for exec probes (never root, never the proxy's uid or gid). */
  account: () => Promise<ExecAccount>;
}

/** What /status shows of the runner. */
export interface RunnerState {
  phase: Phase;
  message: string;
  pid?: number;
  /** The credentials the running runner reported for itself. */
  uid?: number;
  gid?: number;
  /** The program it runs: in place, or a world-readable copy when the account cannot read the package. */
  script?: string;
}

interface Pending {
  what: string;
  resolve: (result: CheckResult) => void;
}

/** One spawned runner: its pipes, and the checks sent to it and not answered yet. */
interface Connection {
  channel: ChildChannel;
  ready: boolean;
  uid?: number;
  gid?: number;
  pending: Map<number, Pending>;
}

export class ProbeRunner {
  private readonly options: ProbeRunnerOptions;
  private supervisor: ChildSupervisor | undefined;
  private account: ExecAccount | undefined;
  private script: string | undefined;
  private copyDir: string | undefined;
  private connection: Connection | undefined;
  /** Why the runner cannot be started (account, Node.js, program); cleared by the next attempt. */
  private problem: string | undefined;
  /** Starts and stops, one at a time in call order: a stop never tears down what a later start set up. */
  private readonly lifecycle = new OperationQueue();
  private starting = false;
  /** Stops queued and not yet done: a start meanwhile must not take the runner for running. */
  private stopsPending = 0;
  private wanted = false;
  private nextId = 1;
  private waiters = new Set<() => void>();

  constructor(options: ProbeRunnerOptions) {
    this.options = options;
  }

  /** Starts the runner unless it runs or is starting; a failed start is tried again at the next call. */
  start(): void {
    this.wanted = true;
    if (this.starting || (this.supervisor && this.stopsPending === 0)) return;
    this.starting = true;
    void this.lifecycle.run(async () => {
      try {
        if (this.wanted && !this.supervisor) await this.launch();
      } finally {
        this.starting = false;
        this.wake();
      }
    });
  }

  /** Stops the runner; pending checks fail. The next start resolves the account again. */
  stop(): Promise<void> {
    this.wanted = false;
    this.wake();
    this.stopsPending += 1;
    return this.lifecycle.run(async () => {
      const supervisor = this.supervisor;
      this.supervisor = undefined;
      this.disconnect('the probe runner was stopped');
      await supervisor?.stop();
      if (this.copyDir) rmSync(this.copyDir, { recursive: true, force: true });
      this.copyDir = undefined;
      this.account = undefined;
      this.script = undefined;
      this.problem = undefined;
    }).finally(() => {
      this.stopsPending -= 1;
    });
  }

  state(): RunnerState {
    const base = { ...(this.script ? { script: this.script } : {}) };
    if (this.problem) return { phase: 'Failed', message: this.problem, ...base };
    if (!this.supervisor) return { phase: this.starting ? 'Starting' : 'Stopped', message: this.starting ? 'starting' : 'not running (no network probes)', ...base };
    const state = this.supervisor.state();
    const connection = this.connection;
    const ready = connection?.ready ? { pid: connection.channel.pid, uid: connection.uid!, gid: connection.gid! } : {};
    const phase = state.phase === 'Ready' && !connection?.ready ? 'Starting' : state.phase;
    return { phase, message: state.message, ...ready, ...base };
  }

  /** One check, answered by the runner. Never rejects: every failure is a failing result. */
  async check(check: NetworkCheck, context: CheckContext): Promise<CheckResult> {
    const what = describeHandler(check);
    this.start();
    const connection = await this.ready(context);
    if (!connection) {
      if (context.signal.aborted) return { ok: false, latencyMs: 0, message: `${what}: cancelled` };
      const why = this.problem ?? `the probe runner is not running: ${this.supervisor?.state().message ?? 'starting'}`;
      return { ok: false, latencyMs: 0, message: `${what}: not run: ${why}` };
    }
    const id = this.nextId++;
    const started = performance.now();
    return new Promise<CheckResult>((resolve) => {
      const finish = (result: CheckResult) => {
        if (!connection.pending.delete(id)) return;
        clearTimeout(timer);
        context.signal.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const onAbort = () => {
        this.send(connection, { cancel: id });
        finish({ ok: false, latencyMs: Math.round(performance.now() - started), message: `${what}: cancelled` });
      };
      const timer = setTimeout(() => {
        this.send(connection, { cancel: id });
        finish({ ok: false, latencyMs: Math.round(performance.now() - started), message: `${what}: the probe runner did not answer within ${(context.timeoutMs + ANSWER_SLACK_MS) / 1000} s` });
      }, context.timeoutMs + ANSWER_SLACK_MS);
      connection.pending.set(id, { what, resolve: finish });
      context.signal.addEventListener('abort', onAbort, { once: true });
      this.send(connection, { id, check, timeoutMs: context.timeoutMs });
    });
  }

  private async launch(): Promise<void> {
    this.problem = undefined;
    try {
      const account = await this.options.account();
      const script = this.prepareScript(account);
      this.account = account;
      this.script = script;
      // Through env -u: nothing may load code into the runner through NODE_OPTIONS (a test
      // runner's hooks, injected into every spawn, point into a checkout the account cannot read).
      const env = findExecutable('env') ?? '/usr/bin/env';
      const supervisor = new ChildSupervisor({
        spec: { name: RUNNER_ENTRY, command: env, args: ['-u', 'NODE_OPTIONS', process.execPath, script], env: RUNNER_ENV, uid: account.uid, gid: account.gid, stopGraceMs: 1000, noNewPrivileges: true },
        log: this.options.log,
        registry: this.options.registry,
        channel: (channel) => this.connect(channel),
      });
      supervisor.on('exit', () => {
        if (this.supervisor === supervisor) this.disconnect('the probe runner exited during the check; it is restarted');
      });
      this.supervisor = supervisor;
      await supervisor.start();
    } catch (err) {
      this.problem = (err as Error).message;
      this.options.log.warn({ event: 'probe-runner-unavailable' }, `probe runner cannot start: ${this.problem}`);
    }
  }

  /**
   * The runner program as the account can read it: the package's own when it can (an
   * installed package), else a world-readable copy (a checkout under a 0700 directory).
   */
  private prepareScript(account: ExecAccount): string {
    const who = { uid: account.uid, gid: account.gid, label: account.user };
    const node = accessProblem(process.execPath, who, 'execute');
    if (node) throw new Error(`probes run as ${account.user} (probes.execUser) with this Node.js (${process.execPath}), but ${node}`);
    const script = bundlePath(RUNNER_ENTRY);
    if (!accessProblem(script, who, 'read')) return script;
    if (this.copyDir) rmSync(this.copyDir, { recursive: true, force: true });
    const copy = temporaryBundleCopy(RUNNER_ENTRY);
    this.copyDir = copy.dir;
    const problem = accessProblem(copy.script, who, 'read');
    if (problem) throw new Error(`${account.user} cannot read the probe runner copied to ${copy.dir}: ${problem}`);
    return copy.script;
  }

  private connect(channel: ChildChannel): void {
    const connection: Connection = { channel, ready: false, pending: new Map() };
    this.connection = connection;
    const lines = new LineSplitter((line) => {
      // A runner that was stopped or replaced has nothing more to say.
      if (this.connection !== connection) return;
      const reply = line.truncated ? undefined : parseReply(line.text);
      if (!reply) {
        this.options.log.warn({ event: 'probe-runner-garbage', pid: channel.pid }, 'probe runner wrote a line that is not a reply; ignored');
        return;
      }
      if ('ready' in reply) return this.greeted(connection, reply);
      connection.pending.get(reply.id)?.resolve({ ok: reply.ok, latencyMs: reply.latencyMs, message: reply.message });
    });
    channel.output.on('data', (chunk: Buffer) => lines.push(chunk));
    channel.output.on('error', () => undefined);
  }

  /** The runner is up: it must hold the account's credentials, or its probes would not be what they claim. */
  private greeted(connection: Connection, hello: { uid: number; gid: number; groups: number[] }): void {
    const account = this.account;
    if (!account) return;
    const foreign = hello.groups.filter((g) => g !== account.gid);
    if (hello.uid !== account.uid || hello.gid !== account.gid || foreign.length) {
      this.problem = `the probe runner (pid ${connection.channel.pid}) runs as uid ${hello.uid} gid ${hello.gid} groups ${hello.groups.join(',') || 'none'}, not as ${account.user} (uid ${account.uid}, gid ${account.gid} only); not using it`;
      this.options.log.error({ event: 'probe-runner-credentials', ...hello }, this.problem);
      this.wake();
      return;
    }
    connection.ready = true;
    connection.uid = hello.uid;
    connection.gid = hello.gid;
    this.wake();
  }

  /** The current runner once it said hello, or undefined when it cannot be had in time. */
  private async ready(context: CheckContext): Promise<Connection | undefined> {
    const deadline = performance.now() + START_WAIT_MS;
    for (;;) {
      if (this.connection?.ready) return this.connection;
      if (this.problem || context.signal.aborted || !this.wanted) return undefined;
      const left = deadline - performance.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          context.signal.removeEventListener('abort', done);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        context.signal.addEventListener('abort', done, { once: true });
        this.waiters.add(done);
      });
    }
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  private send(connection: Connection, request: RunnerRequest): void {
    if (connection.channel.input.writable) connection.channel.input.write(`${JSON.stringify(request)}\n`);
  }

  /** The runner went away: whatever it had not answered fails now, not at its timeout. */
  private disconnect(why: string): void {
    const connection = this.connection;
    this.connection = undefined;
    if (!connection) return;
    for (const pending of [...connection.pending.values()]) pending.resolve({ ok: false, latencyMs: 0, message: `${pending.what}: ${why}` });
  }
}
