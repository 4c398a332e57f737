/**
 * The iptables reconciler the daemon runs: installs the redirect rules, keeps them
 * converged while the harness runs, and leaves or removes them on stop (iptables.onStop).
 *
 * Level triggered: every pass looks at the tables, compares with the desired rulesets and
 * repairs what differs, so a pass is safe at any moment and a missed event costs only
 * latency. Passes are triggered by nft's change events (nft backend), a 1 s poll when there
 * are no events (legacy backend, or no nft program), and a periodic resync as a safety net.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { ConfigError } from '../util/errors.ts';
import type { HarnessConfig } from '../config/types.ts';
import { BaseComponent } from '../harness/component.ts';
import type { Logger } from '../log/logger.ts';
import { Backoff } from '../util/backoff.ts';
import { resolveBackend, type Backend } from './backend.ts';
import { desiredRulesets, resolveRenderInput } from './desired.ts';
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

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/** Errors a retry cannot fix: the operator has to act. */
function isPermanent(err: unknown): boolean {
  return err instanceof IptablesUnavailableError || err instanceof ConfigError;
}

export class IptablesComponent extends BaseComponent {
  private config: HarnessConfig;
  private readonly runner: CommandRunner;
  private readonly clock: Clock;
  private readonly repairs: Counter<'family'>;
  private readonly lastApply: Gauge<'family'>;
  private backend: Backend | undefined;
  private tables: NatTable[] = [];
  private desired = new Map<Family, Ruleset>();
  private monitor: NftMonitor | undefined;
  private readonly ownPids = new Map<number, number>();
  private converged = false;
  private stopping = false;
  private starting: Promise<void> | undefined;
  private inFlight: Promise<void> | undefined;
  private again: string | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeStart: (() => void) | undefined;
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
    this.repairs = metric(options.registry, 'mesh_harness_iptables_drift_repairs_total', () => new Counter({
      name: 'mesh_harness_iptables_drift_repairs_total',
      help: 'Times the harness found its iptables rules changed by someone else and restored them.',
      labelNames: ['family'],
      registers: [options.registry],
    }));
    this.lastApply = metric(options.registry, 'mesh_harness_iptables_last_apply_timestamp_seconds', () => new Gauge({
      name: 'mesh_harness_iptables_last_apply_timestamp_seconds',
      help: 'When the harness last changed its iptables rules (install or repair).',
      labelNames: ['family'],
      registers: [options.registry],
    }));
  }

  async start(): Promise<void> {
    this.starting = this.doStart();
    try {
      await this.starting;
    } finally {
      this.starting = undefined;
    }
  }

  private async doStart(): Promise<void> {
    this.stopping = false;
    this.converged = false;
    if (!this.config.iptables.enabled) {
      this.setState('Disabled', { message: 'iptables.enabled is false: no redirect rules managed' });
      return;
    }
    this.setState('Starting', { message: 'resolving proxy user, group and iptables backend' });
    try {
      await this.prepare(this.config);
    } catch (err) {
      this.setState('Failed', { message: 'cannot install redirect rules', lastError: (err as Error).message });
      throw err;
    }
    if (this.stopping) return;
    this.setState('Starting', { message: `installing redirect rules (${this.backend!.mode} backend)` });
    await this.convergeAtStart();
    if (this.stopping) return;
    this.watch();
    this.setState('Ready', { message: 'redirect rules converged', lastError: undefined, detail: this.detail() });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeStart?.();
    await this.starting?.catch(() => undefined);
    this.unwatch();
    await this.inFlight;
    const phase = this.state().phase;
    if (phase === 'Disabled' || phase === 'Stopped') return;
    // Rules were never installed by this run, so there is nothing to keep or clean.
    if (this.tables.length === 0 || phase === 'Failed') {
      this.setState('Stopped', { message: 'stopped' });
      return;
    }
    this.setState('Stopping', { message: `applying iptables.onStop=${this.config.iptables.onStop}` });
    if (this.config.iptables.onStop === 'clean') {
      await this.removeRules(this.tables);
      this.setState('Stopped', { message: 'redirect rules removed (iptables.onStop=clean)' });
    } else {
      this.log.info('leaving redirect rules in place (iptables.onStop=keep): traffic keeps going to the proxy port, none bypasses the mesh');
      this.setState('Stopped', { message: 'redirect rules left in place (iptables.onStop=keep)' });
    }
  }

  /**
   * Applies a reloaded configuration. Only a different desired ruleset touches the tables;
   * families or backends no longer managed are cleaned. Returns whether rules changed.
   */
  async update(config: HarnessConfig): Promise<boolean> {
    const previous = this.config;
    this.config = config;
    if (!config.iptables.enabled) {
      if (!previous.iptables.enabled) return false;
      this.unwatch();
      await this.inFlight;
      if (config.iptables.onStop === 'clean') await this.removeRules(this.tables);
      this.tables = [];
      this.setState('Disabled', { message: 'iptables.enabled is false: no redirect rules managed' });
      return config.iptables.onStop === 'clean';
    }
    if (!previous.iptables.enabled || this.tables.length === 0) {
      await this.start();
      return true;
    }
    const oldTables = this.tables;
    const oldDesired = this.desired;
    this.unwatch();
    await this.inFlight;
    try {
      await this.prepare(config);
    } catch (err) {
      this.tables = oldTables;
      this.desired = oldDesired;
      this.setState('Degraded', { message: 'reloaded configuration not applied; keeping the previous rules', lastError: (err as Error).message });
      this.watch();
      throw err;
    }
    const kept = (t: NatTable) => this.tables.some((n) => n.tools.restore === t.tools.restore && n.family === t.family);
    await this.removeRules(oldTables.filter((t) => !kept(t)));
    const changed = this.tables.length !== oldTables.length || this.tables.some((t) => JSON.stringify(this.desired.get(t.family)) !== JSON.stringify(oldDesired.get(t.family)));
    if (changed) this.log.info('configuration changed the redirect rules; applying');
    this.watch();
    if (changed) await this.pass('configuration reloaded');
    return changed;
  }

  private async prepare(config: HarnessConfig): Promise<void> {
    const input = await resolveRenderInput(config);
    const backend = await resolveBackend(this.runner, { backend: config.iptables.backend, ipv6: config.host.ipv6 });
    this.backend = backend;
    this.tables = backend.families.map((tools) => new NatTable(this.runner, tools, (pid) => this.ownPids.set(pid, this.clock.now() + OWN_PID_TTL_MS)));
    this.desired = desiredRulesets(input, backend.families.map((f) => f.family));
    this.log.info({ backend: backend.mode, reason: backend.reason, families: backend.families.map((f) => f.family) }, 'iptables backend resolved');
  }

  /** Retries until the first convergence; errors the operator must fix end the start. */
  private async convergeAtStart(): Promise<void> {
    for (;;) {
      try {
        await this.reconcileOnce('start');
        this.converged = true;
        this.retryBackoff.reset();
        return;
      } catch (err) {
        if (isPermanent(err)) {
          this.setState('Failed', { message: 'cannot install redirect rules', lastError: (err as Error).message });
          throw err;
        }
        const delay = this.retryBackoff.next();
        this.setState('Starting', { message: `installing redirect rules failed; retrying in ${delay} ms`, lastError: (err as Error).message });
        await new Promise<void>((resolve) => {
          this.wakeStart = resolve;
          this.retryTimer = this.clock.setTimeout(resolve, delay);
        });
        this.wakeStart = undefined;
        if (this.stopping) throw new Error('iptables: stopped before the redirect rules were installed');
      }
    }
  }

  /** One look at every managed table, repairing what differs. */
  private async reconcileOnce(reason: string): Promise<void> {
    this.lastPassAt = this.clock.now();
    for (const table of this.tables) {
      const { drift } = await table.converge(this.desired.get(table.family));
      if (drift.length === 0) continue;
      this.lastApply.set({ family: table.family }, this.clock.now() / 1000);
      const changes = drift.map(describeDrift);
      if (this.converged) {
        this.repairs.inc({ family: table.family });
        this.repairCount += 1;
        this.recentRepairs.push(this.clock.now());
        this.log.warn({ family: table.family, trigger: reason, changes }, `repaired iptables drift (${changes.length} change${changes.length === 1 ? '' : 's'})`);
        this.setState(this.state().phase, { detail: { repairs: this.repairCount, lastRepair: { at: new Date(this.clock.now()).toISOString(), family: table.family, changes } } });
      } else {
        this.log.info({ family: table.family, changes }, 'installed redirect rules');
      }
    }
  }

  private watch(): void {
    if (this.stopping) return;
    if (this.backend?.mode === 'nft') {
      this.monitor = new NftMonitor({
        runner: this.runner,
        log: this.log,
        isOwnPid: (pid) => this.isOwnPid(pid),
        onChange: (what) => this.request(`netfilter event: ${what}`),
      });
      if (!this.monitor.start()) {
        this.monitor = undefined;
        this.log.warn('no nft program for change events; polling every second instead');
      }
    }
    this.scheduleTick();
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

  /** Asks for a pass soon; bursts of requests become one pass. */
  private request(reason: string): void {
    if (this.stopping || this.debounceTimer) return;
    const wait = Math.max(EVENT_DEBOUNCE_MS, this.holdUntil - this.clock.now());
    this.debounceTimer = this.clock.setTimeout(() => {
      this.debounceTimer = undefined;
      void this.pass(reason);
    }, wait);
  }

  /** Runs one pass, or queues one behind the pass in flight. */
  private pass(reason: string): Promise<void> {
    if (this.inFlight) {
      this.again = reason;
      return this.inFlight;
    }
    this.inFlight = (async () => {
      let next: string | undefined = reason;
      while (next !== undefined && !this.stopping) {
        this.again = undefined;
        await this.passOnce(next);
        next = this.again;
      }
    })().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
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
      this.setState('Ready', { message: 'redirect rules converged', lastError: undefined, detail: this.detail() });
    } catch (err) {
      const delay = this.retryBackoff.next();
      this.setState('Degraded', { message: `redirect rules not converged; retrying in ${delay} ms`, lastError: (err as Error).message, detail: this.detail() });
      this.clock.clearTimeout(this.retryTimer);
      this.retryTimer = this.clock.setTimeout(() => this.request('retry after failure'), delay);
    }
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
      changeEvents: this.monitor?.running ? 'nft monitor' : `poll every ${POLL_INTERVAL_MS} ms`,
      repairs: this.repairCount,
    };
  }
}
