import { AdminServer, type AdminSource } from '../admin/server.ts';
import type { HarnessMetrics } from '../admin/metrics.ts';
import type { HarnessConfig } from '../config/types.ts';
import type { Logger } from '../log/logger.ts';
import type { Notifier } from '../systemd/notify.ts';
import { allReady, type Component, type ComponentState, type PreparedUpdate } from '../component/component.ts';
import { ConfigState } from './config-state.ts';
import { flushCompileCache } from '../util/compile-cache.ts';

export interface HarnessOptions {
  config: HarnessConfig;
  /** Where the configuration came from, for /status. */
  configSource?: string;
  log: Logger;
  metrics: HarnessMetrics;
  /**
   * In start order; stopped in reverse. A function is called after the admin server
   * listens, so /live answers before the component modules (gRPC, ...) are loaded.
   */
  components: Component[] | (() => Promise<Component[]>);
  version: string;
  startedAt?: Date;
  /** sd_notify; absent or disabled outside systemd. */
  notifier?: Notifier;

  /** Re-reads and validates the configuration for SIGHUP; throws a ConfigError on problems. */
  reloadConfig?: () => HarnessConfig;
}

/** READY=1 at the latest this long after every component was started. */
export const READY_DEADLINE_MS = 60_000;
/**
 * How long a reason must last before READY=1 is sent without being meshed. A new SPIRE
 * registration entry answers PermissionDenied for a few seconds (the agent syncs every 5 s
 * by default): that is normal start-up, not a reason to tell systemd we are done.
 */
export const READY_SETTLE_MS = 20_000;

/**
 * The daemon's core: serves the admin API first (so /live answers while the rest comes
 * up), starts components in order, stops them in reverse order, and tells systemd what
 * it is doing.
 *
 * Start-up readiness (READY=1): sent once the harness is meshed (every component ready),
 * or once it knows why it is not yet (see settled()), or READY_DEADLINE_MS after every
 * component was started at the latest.
 * STATUS= says what it waits for, and it keeps trying. So `systemctl start` returns within
 * about a minute, a machine that cannot get its identity is not killed and restarted in a
 * loop by TimeoutStartSec, and /ready (503 until meshed) stays the meshed signal.
 */
export class Harness implements AdminSource {
  private readonly admin: AdminServer;
  private readonly configState: ConfigState;
  private stopping: Promise<void> | undefined;
  private reloading: Promise<void> | undefined;
  private reloadRequested = false;
  private watchdog: NodeJS.Timeout | undefined;
  private lastStatus = '';
  private readySent = false;
  /** Every component's start() was called: a state that is not Starting is then a definite one. */
  private allStarted = false;
  private readyDeadline: NodeJS.Timeout | undefined;
  private readySettle: NodeJS.Timeout | undefined;
  private allStartedAt = 0;
  private readonly onChange = () => this.notifyState();
  private parts: Component[] = [];

  constructor(private readonly options: HarnessOptions) {
    if (Array.isArray(options.components)) this.parts = options.components;
    this.configState = new ConfigState(options.config, options.configSource ?? 'defaults', options.log.child({ component: 'config' }));
    this.admin = new AdminServer({
      address: options.config.admin.address,
      port: options.config.admin.port,
      version: options.version,
      startedAt: options.startedAt ?? new Date(),
      source: this,
      metrics: options.metrics,
      log: options.log.child({ component: 'admin' }),
    });
  }

  get config(): HarnessConfig {
    return this.configState.current;
  }

  components(): ComponentState[] {
    return [this.configState, ...this.parts].map((c) => c.state());
  }

  ready(): boolean {
    return this.parts.length > 0 && allReady(this.components());
  }

  /** What the harness waits for, from the first component that is not ready. */
  statusText(): string {
    if (this.stopping) return 'stopping';
    const waiting = this.components().find((s) => !s.ready);
    if (!waiting) return this.parts.length ? 'ready: all components converged' : 'starting: loading components';
    return `${waiting.name}: ${waiting.message}`;
  }

  async start(): Promise<void> {
    const notifier = this.options.notifier;
    if (notifier?.watchdogIntervalMs) {
      // Sent from the event loop: a blocked loop stops the pings and systemd restarts us.
      this.watchdog = setInterval(() => notifier.notify({ WATCHDOG: 1 }), notifier.watchdogIntervalMs);
      this.watchdog.unref();
    }
    const address = await this.admin.listen();
    this.options.log.info({ address: address.address, port: address.port }, 'admin server listening');
    if (typeof this.options.components === 'function') this.parts = await this.options.components();
    for (const component of [this.configState, ...this.parts]) component.on('change', this.onChange);
    for (const [index, component] of this.parts.entries()) {
      if (this.stopping) return;
      const started = component.start();
      // Readiness to systemd does not wait for the last start to return: the proxy's lasts
      // until it has an SVID, which may take forever on a machine without a SPIRE entry.
      if (index === this.parts.length - 1) this.allComponentsStarted();
      await started;
    }
    this.notifyState();
  }

  private allComponentsStarted(): void {
    this.allStarted = true;
    this.allStartedAt = Date.now();
    this.readyDeadline = setTimeout(() => this.notifyState(true), READY_DEADLINE_MS);
    this.readyDeadline.unref();
    this.readySettle = setTimeout(() => this.notifyState(), READY_SETTLE_MS);
    this.readySettle.unref();
    this.notifyState();
  }

  /**
   * Whether the harness knows why it is not meshed: every component has been started (at
   * least READY_SETTLE_MS ago), none is at its first attempt, and one that is not ready reports an error (a missing SPIRE
   * entry, say). A component merely waiting for another (the proxy for the SVID it is
   * about to get) is no reason to stop waiting for the meshed state.
   */
  private settled(): boolean {
    const states = this.components();
    return this.allStarted && Date.now() - this.allStartedAt >= READY_SETTLE_MS && states.every((s) => s.phase !== 'Starting') && states.some((s) => !s.ready && s.lastError !== undefined);
  }

  /** SIGHUP: validate the new configuration, keep the old one on error, apply only what changed. */
  reload(): Promise<void> {
    // A SIGHUP during a reload may carry a newer file than the one being applied: run
    // once more afterwards instead of folding it into the reload already reading the old one.
    if (this.reloading) {
      this.reloadRequested = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      do {
        this.reloadRequested = false;
        await this.doReload();
      } while (this.reloadRequested && !this.stopping);
    })().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async doReload(): Promise<void> {
    const { notifier, reloadConfig, log } = this.options;
    if (!reloadConfig || this.stopping) return;
    notifier?.notify({ RELOADING: 1, MONOTONIC_USEC: (process.hrtime.bigint() / 1000n).toString() });
    try {
      let next: HarnessConfig;
      try {
        next = reloadConfig();
      } catch (err) {
        const problems = (err as { problems?: string[] }).problems ?? [(err as Error).message];
        this.configState.rejected(problems);
        return;
      }
      if (next.admin.address !== this.config.admin.address || next.admin.port !== this.config.admin.port) {
        log.warn('admin address changes take effect at the next restart');
      }
      // All or nothing: every component checks the new configuration against the host
      // first; only when all of them can apply it does any of them change anything.
      const prepared: Array<{ name: string; update: PreparedUpdate }> = [];
      for (const component of this.parts) {
        if (!component.prepare) continue;
        try {
          prepared.push({ name: component.name, update: await component.prepare(next) });
        } catch (err) {
          this.configState.refused(component.name, (err as { problems?: string[] }).problems ?? [(err as Error).message]);
          return;
        }
      }
      this.configState.accepted(next);
      const failures: string[] = [];
      for (const { name, update } of prepared) {
        try {
          await update.commit();
        } catch (err) {
          // A commit that fails after every prepare passed is the component's own problem
          // (its state says what it retries); the configuration stays accepted.
          failures.push(`${name}: ${(err as Error).message}`);
          log.error({ failed: name, err: (err as Error).message }, 'component could not apply the reloaded configuration');
        }
      }
      if (failures.length) {
        this.configState.partlyApplied(failures);
        return;
      }
      log.info('configuration reloaded');
    } finally {
      // systemd waits for READY=1 to end the reload, whatever its outcome.
      notifier?.notify({ READY: 1, STATUS: this.statusText() });
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private notifyState(deadlinePassed = false): void {
    const notifier = this.options.notifier;
    if (!notifier?.enabled || this.stopping) return;
    const status = this.statusText();
    const fields: Record<string, string | number> = {};
    if (status !== this.lastStatus) fields.STATUS = status;
    if (!this.readySent && (this.ready() || this.settled() || (deadlinePassed && this.allStarted))) {
      fields.READY = 1;
      fields.STATUS = status;
      this.readySent = true;
      // Everything the daemon runs is loaded now: keep it compiled for the next start.
      flushCompileCache();
      if (this.ready()) this.options.log.info('all components ready; told systemd READY=1');
      else this.options.log.warn({ status }, 'told systemd READY=1 without being meshed yet; still trying (see STATUS and /status)');
    }
    this.lastStatus = status;
    if (Object.keys(fields).length) notifier.notify(fields);
  }

  private async doStop(): Promise<void> {
    this.options.notifier?.notify({ STOPPING: 1, STATUS: 'stopping' });
    if (this.watchdog) clearInterval(this.watchdog);
    clearTimeout(this.readyDeadline);
    clearTimeout(this.readySettle);
    const errors: string[] = [];
    for (const component of [...this.parts].reverse()) {
      try {
        await component.stop();
      } catch (err) {
        errors.push(`${component.name}: ${(err as Error).message}`);
        this.options.log.error({ err: (err as Error).message, failed: component.name }, 'component failed to stop');
      }
    }
    for (const component of [this.configState, ...this.parts]) component.off('change', this.onChange);
    await this.admin.close();
    if (errors.length) throw new Error(`shutdown incomplete: ${errors.join('; ')}`);
  }
}
