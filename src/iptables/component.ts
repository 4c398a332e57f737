/**
 * The iptables reconciler the daemon runs: prepares the redirect chains at start, enters
 * them from PREROUTING and OUTPUT only once the proxy has answered ready (enableRedirect),
 * keeps them converged while the harness runs, and leaves or removes them on stop
 * (iptables.onStop).
 *
 * Start, reload, stop and every reconcile pass run one at a time on one OperationQueue, so
 * a SIGHUP in the middle of a retrying first install cannot strand either of them.
 *
 * Level triggered: every pass looks at the tables, compares with the desired rulesets and
 * repairs what differs, so a pass is safe at any moment and a missed event costs only
 * latency. Passes are triggered by nft's change events (nft backend), a 1 s poll when there
 * are no events (legacy backend, or no nft program), and a periodic resync as a safety net.
 */
import type { Counter, Gauge, Registry } from 'prom-client';
import { METRIC, sharedCounter, sharedGauge } from '../admin/metrics.ts';
import { ConfigError } from '../util/errors.ts';
import type { HarnessConfig } from '../config/types.ts';
import { BaseComponent, type PreparedUpdate } from '../component/component.ts';
import { OperationQueue } from '../component/queue.ts';
import type { Logger } from '../log/logger.ts';
import { Backoff } from '../util/backoff.ts';
import { resolveBackend, type Backend } from './backend.ts';
import { desiredRulesets, resolveRenderInput } from './desired.ts';
import type { RenderInput } from './render.ts';
import { describeDrift } from './drift.ts';
import { IptablesUnavailableError } from './errors.ts';
import { NatTable } from './nat-table.ts';
import { execRunner, type CommandRunner } from './runner.ts';
import type { Family, Ruleset } from './ruleset.ts';
import { NftMonitor } from './watch.ts';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  clearTimeout(timer: NodeJS.Timeout | undefined): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer),
};

export interface IptablesComponentOptions {
  config: HarnessConfig;
  log: Logger;
  registry: Registry;
  /** Runs the iptables programs; a prefixed runner acts on a network namespace (tests). */
  runner?: CommandRunner;
  clock?: Clock;
  /** Where sshd's configuration is read from (its ports are never redirected). */
  sshdConfigDir?: string;
}

/** A configuration checked against the host and ready to apply. */
interface Plan {
  config: HarnessConfig;
  /** Absent when iptables.enabled is false. */
  backend?: Backend;
  input?: RenderInput;
}

/** Poll period when no change events are available. */
export const POLL_INTERVAL_MS = 1000;
/** Events arriving within this window are handled by one pass. */
const EVENT_DEBOUNCE_MS = 15;
/** More repairs than this within FIGHT_WINDOW_MS means another program keeps undoing ours. */
const FIGHT_REPAIRS = 20;
const FIGHT_WINDOW_MS = 10_000;
/** Our own iptables-restore pids are remembered this long for the event filter. */
const OWN_PID_TTL_MS = 10_000;

/** Errors a retry cannot fix: the operator has to act. */
function isPermanent(err: unknown): boolean {
  return err instanceof IptablesUnavailableError || err instanceof ConfigError;
}

export class IptablesComponent extends BaseComponent {
  private config: HarnessConfig;
  private readonly runner: CommandRunner;
  private readonly clock: Clock;
  private readonly sshdConfigDir: string | undefined;
  private readonly repairs: Counter<'family'>;
  private readonly lastApply: Gauge<'family'>;
  /** start, commit, stop and every pass, one at a time. */
  private readonly queue = new OperationQueue();
  private backend: Backend | undefined;
  private input: RenderInput | undefined;
  private tables: NatTable[] = [];
  private desired = new Map<Family, Ruleset>();
  /** The jumps are wanted: the proxy has answered ready once in this run. */
  private redirecting = false;
  /** Per family, the ruleset last converged: a difference from it that we did not ask for is drift. */
  private readonly established = new Map<Family, string>();
  private monitor: NftMonitor | undefined;
  private readonly ownPids = new Map<number, number>();
  private stopping = false;
  private passQueued = false;
  private debounceTimer: NodeJS.Timeout | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly retryBackoff = new Backoff({ baseMs: 500, maxMs: 30_000 });
  private readonly fightBackoff = new Backoff({ baseMs: 1000, maxMs: 60_000 });
  private recentRepairs: number[] = [];
  private holdUntil = 0;
  private repairCount = 0;
  private lastPassAt = 0;

  constructor(options: IptablesComponentOptions) {
    const clock = options.clock ?? systemClock;
    super('iptables', options.log.child({ component: 'iptables' }), () => new Date(clock.now()));
    this.config = options.config;
    this.clock = clock;
    this.runner = options.runner ?? execRunner();
    this.sshdConfigDir = options.sshdConfigDir;
    this.repairs = sharedCounter(options.registry, METRIC.iptablesDriftRepairs, 'Times the harness found its iptables rules changed by someone else and restored them.', ['family']);
    this.lastApply = sharedGauge(options.registry, METRIC.iptablesLastApply, 'When the harness last changed its iptables rules (install, reload or repair).', ['family']);
  }

  /**
   * Resolves accounts and backend and prepares the owned chains (without jumps). Resolves
   * after the first attempt: a transient failure is retried in the background (Degraded),
   * so the proxy can start meanwhile; a failure only the operator can fix throws.
   */
  start(): Promise<void> {
    this.stopping = false;
    return this.queue.run(() => this.doStart());
  }

  private async doStart(): Promise<void> {
    if (!this.config.iptables.enabled) {
      this.setState('Disabled', { message: 'iptables.enabled is false: no redirect rules managed' });
      return;
    }
    this.setState('Starting', { message: 'resolving proxy user, group and iptables backend' });
    let plan: Plan;
    try {
      plan = await this.plan(this.config);
    } catch (err) {
      this.setState('Failed', { message: 'cannot install redirect rules', lastError: (err as Error).message });
      throw err;
    }
    this.adopt(plan);
    await this.install('start');
  }

  /** The first pass with the current plan; errors the operator must fix end the start. */
  private async install(reason: string): Promise<void> {
    if (this.stopping) return;
    this.setState('Starting', { message: `preparing redirect chains (${this.backend!.mode} backend)` });
    try {
      await this.reconcileOnce(reason);
      this.retryBackoff.reset();
      this.settle();
    } catch (err) {
      if (isPermanent(err)) {
        this.setState('Failed', { message: 'cannot install redirect rules', lastError: (err as Error).message });
        throw err;
      }
      this.retryLater(err as Error);
    }
    this.watch();
  }

  /**
   * The proxy has answered ready: from now on the jumps are part of the desired rules.
   * Idempotent; called on every readiness, acts on the first.
   */
  enableRedirect(): Promise<void> {
    if (this.redirecting || this.stopping) return Promise.resolve();
    return this.queue.run(async () => {
      if (this.redirecting || this.stopping || !this.config.iptables.enabled) return;
      this.redirecting = true;
      this.log.info('the proxy answered ready: inserting the jumps from PREROUTING and OUTPUT');
      if (this.input && this.backend) this.desired = desiredRulesets(this.input, this.backend.families.map((f) => f.family), { redirect: true });
      if (this.tables.length) await this.passOnce('the proxy answered ready');
    });
  }

  stop(): Promise<void> {
    // Outside the queue, so no further pass is scheduled while stop waits for its turn.
    this.stopping = true;
    this.unwatch();
    return this.queue.run(() => this.doStop());
  }

  private async doStop(): Promise<void> {
    const phase = this.state().phase;
    if (phase === 'Disabled' || phase === 'Stopped') return;
    // Rules were never installed by this run, so there is nothing to keep or clean.
    if (this.tables.length === 0 || phase === 'Failed') {
      this.setState('Stopped', { message: 'stopped' });
      return;
    }
    if (!this.redirecting) {
      // Nothing was ever redirected in this run: the prepared chains go whatever onStop
      // says, so a harness that never meshed leaves the host as it found it.
      this.setState('Stopping', { message: 'removing the prepared chains (the proxy never answered ready)' });
      await this.removeRules(this.tables);
      this.setState('Stopped', { message: 'prepared chains removed; traffic was never redirected' });
      return;
    }
    this.setState('Stopping', { message: `applying iptables.onStop=${this.config.iptables.onStop}` });
    if (this.config.iptables.onStop === 'clean') {
      await this.removeRules(this.tables);
      this.setState('Stopped', { message: 'redirect rules removed (iptables.onStop=clean)' });
    } else {
      this.log.info('leaving redirect rules in place for the next start (iptables.onStop=keep); under systemd the unit removes them unless it is restarting');
      this.setState('Stopped', { message: 'redirect rules left in place (iptables.onStop=keep)' });
    }
  }

  /**
   * Reload, first half: resolves accounts, reads sshd's ports and finds the backend for
   * `config`, changing nothing. Throws (ConfigError, IptablesUnavailableError) when the
   * configuration cannot be applied on this host.
   */
  async prepare(config: HarnessConfig): Promise<PreparedUpdate> {
    const plan = await this.plan(config);
    return { commit: () => this.queue.run(() => this.commit(plan)) };
  }

  private async commit(plan: Plan): Promise<void> {
    const previous = this.config;
    this.config = plan.config;
    if (this.stopping) return;
    if (!plan.config.iptables.enabled) {
      if (!previous.iptables.enabled) return;
      this.unwatch();
      if (plan.config.iptables.onStop === 'clean' || !this.redirecting) await this.removeRules(this.tables);
      this.tables = [];
      this.established.clear();
      this.setState('Disabled', { message: 'iptables.enabled is false: no redirect rules managed' });
      return;
    }
    if (!previous.iptables.enabled || this.tables.length === 0) {
      this.adopt(plan);
      await this.install('configuration reloaded');
      return;
    }
    const oldTables = this.tables;
    const oldMode = this.backend?.mode;
    this.adopt(plan);
    const kept = (t: NatTable) => this.tables.some((n) => n.tools.restore === t.tools.restore && n.family === t.family);
    const dropped = oldTables.filter((t) => !kept(t));
    await this.removeRules(dropped);
    for (const table of dropped) this.established.delete(table.family);
    if (oldMode !== this.backend?.mode) this.unwatch();
    this.watch();
    await this.passOnce('configuration reloaded');
  }

  private async plan(config: HarnessConfig): Promise<Plan> {
    if (!config.iptables.enabled) return { config };
    const input = await resolveRenderInput(config, this.sshdConfigDir);
    const backend = await resolveBackend(this.runner, { backend: config.iptables.backend, ipv6: config.host.ipv6 });
    return { config, backend, input };
  }

  private adopt(plan: Plan): void {
    const { backend, input } = plan;
    if (!backend || !input) return;
    this.backend = backend;
    this.input = input;
    this.tables = backend.families.map((tools) => new NatTable(this.runner, tools, (pid) => this.ownPids.set(pid, this.clock.now() + OWN_PID_TTL_MS)));
    this.desired = desiredRulesets(input, backend.families.map((f) => f.family), { redirect: this.redirecting });
    this.log.info({ backend: backend.mode, reason: backend.reason, families: backend.families.map((f) => f.family), protectedInboundPorts: input.protectedInboundPorts }, 'iptables backend resolved');
  }

  /**
   * One look at every managed table, converging what differs. A difference counts as drift
   * (logged, counted, fed to the fight detector) only when the table had already converged
   * on this very ruleset: installing, a reload and enabling the redirect are changes we
   * asked for.
   */
  private async reconcileOnce(reason: string): Promise<void> {
    this.lastPassAt = this.clock.now();
    for (const table of this.tables) {
      const desired = this.desired.get(table.family);
      const key = JSON.stringify(desired);
      const { drift } = await table.converge(desired);
      const wasEstablished = this.established.get(table.family) === key;
      this.established.set(table.family, key);
      if (drift.length === 0) continue;
      this.lastApply.set({ family: table.family }, this.clock.now() / 1000);
      const changes = drift.map(describeDrift);
      if (wasEstablished) {
        this.repairs.inc({ family: table.family });
        this.repairCount += 1;
        this.recentRepairs.push(this.clock.now());
        this.log.warn({ family: table.family, trigger: reason, changes }, `repaired iptables drift (${changes.length} change${changes.length === 1 ? '' : 's'})`);
        this.setState(this.state().phase, { detail: { repairs: this.repairCount, lastRepair: { at: new Date(this.clock.now()).toISOString(), family: table.family, changes } } });
      } else {
        this.log.info({ family: table.family, trigger: reason, changes }, 'applied redirect rules');
      }
    }
  }

  /** Starts the change events and the tick; does nothing for what already runs. */
  private watch(): void {
    if (this.stopping) return;
    if (!this.monitor && this.backend?.mode === 'nft') {
      const monitor = new NftMonitor({
        runner: this.runner,
        log: this.log,
        isOwnPid: (pid) => this.isOwnPid(pid),
        onChange: (what) => this.request(`netfilter event: ${what}`),
      });
      if (monitor.start()) this.monitor = monitor;
      else this.log.warn('no nft program for change events; polling every second instead');
    }
    if (!this.tickTimer) this.scheduleTick();
  }

  private unwatch(): void {
    this.monitor?.stop();
    this.monitor = undefined;
    for (const timer of [this.tickTimer, this.debounceTimer, this.retryTimer]) this.clock.clearTimeout(timer);
    this.tickTimer = this.debounceTimer = this.retryTimer = undefined;
  }

  /**
   * Ticks every second: a poll while there are no change events (the legacy backend has
   * none, and nft monitor may be restarting), otherwise a resync once resyncInterval passed.
   */
  private scheduleTick(): void {
    this.tickTimer = this.clock.setTimeout(() => {
      const resync = this.config.iptables.resyncInterval;
      if (!this.monitor?.running) this.request('poll');
      else if (resync > 0 && this.clock.now() - this.lastPassAt >= resync) this.request('periodic resync');
      this.scheduleTick();
    }, POLL_INTERVAL_MS);
  }

  private isOwnPid(pid: number): boolean {
    const now = this.clock.now();
    for (const [p, expires] of this.ownPids) if (expires < now) this.ownPids.delete(p);
    return this.ownPids.has(pid);
  }

  /** Asks for a pass soon; bursts of requests become one pass, queued behind any operation. */
  private request(reason: string): void {
    if (this.stopping || this.debounceTimer) return;
    const wait = Math.max(EVENT_DEBOUNCE_MS, this.holdUntil - this.clock.now());
    this.debounceTimer = this.clock.setTimeout(() => {
      this.debounceTimer = undefined;
      if (this.passQueued) return;
      this.passQueued = true;
      void this.queue.run(async () => {
        this.passQueued = false;
        if (!this.stopping && this.tables.length) await this.passOnce(reason);
      });
    }, wait);
  }

  private async passOnce(reason: string): Promise<void> {
    try {
      await this.reconcileOnce(reason);
      this.retryBackoff.reset();
      const now = this.clock.now();
      this.recentRepairs = this.recentRepairs.filter((t) => t > now - FIGHT_WINDOW_MS);
      if (this.recentRepairs.length > FIGHT_REPAIRS) {
        const delay = this.fightBackoff.next();
        this.holdUntil = now + delay;
        this.setState('Degraded', {
          message: `another program keeps changing the redirect rules (${this.recentRepairs.length} repairs in ${FIGHT_WINDOW_MS / 1000} s); next repair in ${delay} ms`,
          detail: this.detail(),
        });
        return;
      }
      this.fightBackoff.reset();
      this.holdUntil = 0;
      this.settle();
    } catch (err) {
      this.retryLater(err as Error);
    }
  }

  /** The phase once the rules match the desired ones. */
  private settle(): void {
    if (this.redirecting) {
      this.setState('Ready', { message: 'redirect rules converged', lastError: undefined, detail: this.detail() });
    } else {
      this.setState('Pending', { message: 'redirect chains prepared; traffic is redirected once the proxy answers ready', lastError: undefined, detail: this.detail() });
    }
  }

  private retryLater(err: Error): void {
    const delay = this.retryBackoff.next();
    this.setState('Degraded', { message: `redirect rules not converged; retrying in ${delay} ms`, lastError: err.message, detail: this.detail() });
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.request('retry after failure');
    }, delay);
  }

  private async removeRules(tables: NatTable[]): Promise<void> {
    for (const table of tables) {
      try {
        const { drift } = await table.converge(undefined);
        if (drift.length) this.log.info({ family: table.family, removed: drift.map(describeDrift) }, 'removed redirect rules');
      } catch (err) {
        this.log.error({ family: table.family, err: (err as Error).message }, 'could not remove redirect rules');
        throw err;
      }
    }
  }

  private detail(): Record<string, unknown> {
    return {
      backend: this.backend?.mode,
      backendReason: this.backend?.reason,
      families: this.tables.map((t) => t.family),
      redirecting: this.redirecting,
      protectedInboundPorts: this.input?.protectedInboundPorts,
      changeEvents: this.monitor?.running ? 'nft monitor' : `poll every ${POLL_INTERVAL_MS} ms`,
      repairs: this.repairCount,
    };
  }
}
