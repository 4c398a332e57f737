import type { Registry } from 'prom-client';
import type { HarnessConfig } from '../config/types.ts';
import { BaseComponent, type ComponentState, type PreparedUpdate } from '../component/component.ts';
import { OperationQueue } from '../component/queue.ts';
import type { Logger } from '../log/logger.ts';
import type { ChildSpec } from '../supervisor/child.ts';
import { ChildSupervisor, type ChildSupervisorOptions } from '../supervisor/supervisor.ts';
import { findExecutable } from '../supervisor/which.ts';
import { parseWorkloadApiAddress } from '../identity/workload-api-client.ts';
import { accessProblem } from '../util/access.ts';
import { resolveGroup, resolveUser, type ResolvedGroup, type ResolvedUser } from '../util/users.ts';
import { extraEnvProblems, ProxyEnvError, renderProxyEnv, type ClusterProxySettings } from './env.ts';
import { readInstalledProxy, summarizeInstall, type InstallSummary } from './install-record.ts';
import { proxyReadiness } from './readiness.ts';

export interface UserResolver {
  resolveUser(user: string): Promise<ResolvedUser>;
  resolveGroup(group: string): Promise<ResolvedGroup>;
}

export interface ProxyComponentOptions {
  config: HarnessConfig;
  log: Logger;
  registry: Registry;
  /** Resolves once the identity component holds a valid SVID; the proxy never starts before. */
  identity: { waitForSvid(signal?: AbortSignal): Promise<unknown> };
  /** The ExternalWorkload name as known right now (empty: configured or derived, see renderProxyEnv). */
  workloadName: () => string;
  trustAnchorsPem: () => Promise<string> | string;
  /** Cluster proxy settings the registrar sent, if any (local config overrides them). */
  clusterSettings?: () => ClusterProxySettings | undefined;
  /** Workload IPs detected on the host, for LINKERD2_PROXY_INBOUND_IPS when workload.ips is empty. */
  detectedIps?: () => string[];
  users?: UserResolver;
  /** Restart and readiness tuning; the defaults suit production. */
  supervision?: Pick<ChildSupervisorOptions, 'backoff' | 'readyPollMs' | 'steadyPollMs' | 'stableAfterMs' | 'crashLoopThreshold'>;
}

/** Raised when the proxy user could not reach what the proxy needs (its binary, the Workload API socket). */
export class ProxyAccessError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'ProxyAccessError';
  }
}

/**
 * linkerd2-proxy as a harness component: waits for the identity component's SVID (the
 * real proxy panics its identity task when the Workload API is not serving yet), then
 * keeps the proxy running as the unprivileged proxy user under a ChildSupervisor whose
 * readiness is "meshed": the proxy's admin `/ready` and a live identity certificate
 * (see readiness.ts). A proxy that answers /ready without a certificate is restarted.
 */
export class ProxyComponent extends BaseComponent {
  private config: HarnessConfig;
  private readonly users: UserResolver;
  private supervisor: ChildSupervisor | undefined;
  private spec: ChildSpec | undefined;
  /** Aborts a start() that is still resolving the user or waiting for the SVID. */
  private starting: AbortController | undefined;
  private facts: Record<string, unknown> = {};
  /** What `mesh-harness proxy install` recorded for the binary last started, checked against it. */
  private install: InstallSummary | undefined;
  /** The launch after the SVID wait, reload commits and stop, one at a time. */
  private readonly queue = new OperationQueue();

  constructor(private readonly options: ProxyComponentOptions) {
    super('proxy', options.log.child({ component: 'proxy' }));
    this.config = options.config;
    this.users = options.users ?? { resolveUser, resolveGroup };
  }

  /** Until the proxy is first spawned this component's own state; from then on the supervisor's, with the proxy facts added. */
  override state(): ComponentState {
    const base = super.state();
    if (!this.supervisor) return base;
    const child = this.supervisor.state();
    return { ...child, name: this.name, detail: { ...child.detail, ...this.facts } };
  }

  async start(): Promise<void> {
    const abort = new AbortController();
    this.starting = abort;
    // Configuration errors fail the start before waiting for anything: an unknown user,
    // an extraEnv that fights the rendered environment.
    try {
      await this.childSpec(this.config);
    } catch (err) {
      this.setState('Failed', { message: 'cannot resolve the proxy user', lastError: (err as Error).message });
      throw err;
    }
    const problems = extraEnvProblems(this.config);
    if (problems.length) {
      this.setState('Failed', { message: 'proxy.extraEnv overrides variables the harness renders', lastError: problems.join('; ') });
      throw new ProxyEnvError(problems);
    }
    if (abort.signal.aborted) return;
    this.setState('Pending', { message: 'waiting for a valid SVID before starting the proxy' });
    try {
      await this.options.identity.waitForSvid(abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return;
      throw err;
    }
    await this.queue.run(() => this.launch(abort, new Date().toISOString()));
  }

  private async launch(abort: AbortController, svidReadyAt: string): Promise<void> {
    if (abort.signal.aborted) return;
    // Built now, not before the wait: a reload or the workload name may have arrived meanwhile.
    const spec = await this.childSpec(this.config);
    spec.env = await this.render(this.config);
    if (abort.signal.aborted) return;
    const unreachable = this.accessProblems(spec, this.config);
    if (unreachable.length) {
      this.setState('Failed', { message: 'the proxy user cannot reach what the proxy needs', lastError: unreachable.join('; ') });
      throw new ProxyAccessError(unreachable);
    }
    this.starting = undefined;
    this.spec = spec;
    this.facts = { binary: spec.command, user: this.config.proxy.user, group: this.config.proxy.group, svidReadyAt };

    const supervisor = new ChildSupervisor({
      spec: this.spec,
      log: this.options.log,
      registry: this.options.registry,
      isReady: () => proxyReadiness(this.config.proxy.adminPort),
      ...this.options.supervision,
    });
    supervisor.on('change', () => this.emit('change', this.state()));
    supervisor.on('spawn', (pid: number) => {
      void this.readInstall(spec.command);
      this.log.info({ event: 'proxy-spawned', pid, binary: this.spec?.command, uid: this.spec?.uid, gid: this.spec?.gid, svidReadyAt }, `started linkerd2-proxy (pid ${pid}) after the SVID was validated at ${svidReadyAt}`);
    });
    this.supervisor = supervisor;
    await supervisor.start();
  }

  /**
   * Reload, first half: resolves the user and group and renders the environment for
   * `config` (trust anchors read, extraEnv checked) without touching the running proxy.
   */
  async prepare(config: HarnessConfig): Promise<PreparedUpdate> {
    const problems = extraEnvProblems(config);
    if (problems.length) throw new ProxyEnvError(problems);
    const next = await this.childSpec(config);
    next.env = await this.render(config);
    return { commit: () => this.queue.run(() => this.commit(config, next)) };
  }

  /** Restarts the proxy only when what it would be started with changed. */
  private async commit(config: HarnessConfig, next: ChildSpec): Promise<void> {
    this.config = config;
    if (!this.supervisor || !this.spec) return;
    if (sameSpec(this.spec, next)) {
      this.log.debug('proxy environment unchanged; not restarting the proxy');
      return;
    }
    this.log.info({ event: 'proxy-restart', changed: changedKeys(this.spec, next) }, 'proxy configuration changed; restarting the proxy');
    this.spec = next;
    this.facts = { ...this.facts, binary: next.command, user: config.proxy.user, group: config.proxy.group };
    await this.supervisor.restart(next);
  }

  async stop(): Promise<void> {
    this.starting?.abort();
    this.starting = undefined;
    await this.queue.run(async () => {
      if (this.supervisor) await this.supervisor.stop();
      else this.setState('Stopped', { message: 'stopped' });
    });
  }

  /** The proxy's release as installed by `mesh-harness proxy install` (the hello's Versions.proxy); empty when unknown. */
  installedVersion(): string {
    return this.install?.state === 'recorded' ? (this.install.version ?? '') : '';
  }

  /** Re-read at every start: `proxy install` may have replaced the binary since. */
  private async readInstall(binary: string): Promise<void> {
    const install = summarizeInstall(await readInstalledProxy(binary));
    if (JSON.stringify(install) === JSON.stringify(this.install)) return;
    this.install = install;
    this.facts = { ...this.facts, installed: install };
    if (install.state === 'recorded') this.log.info({ version: install.version, proxyVersion: install.proxyVersion, image: install.source, digest: install.manifestDigest }, `linkerd2-proxy ${install.version || '(version unknown)'} as installed by mesh-harness proxy install`);
    else if (install.state !== 'unrecorded') this.log.warn({ reason: install.reason }, 'the proxy install record does not describe the binary; its version is unknown');
    this.emit('change', this.state());
  }

  /** The running proxy's PID, if any. */
  pid(): number | undefined {
    return this.supervisor?.pid();
  }

  /**
   * Checked as the proxy will run (its uid and gid, no supplementary groups) before it is
   * spawned: the real proxy does not report an unreachable Workload API socket, it panics
   * its identity task and answers /ready all the same.
   */
  private accessProblems(spec: ChildSpec, config: HarnessConfig): string[] {
    if (spec.uid === undefined || spec.gid === undefined) return [];
    const account = { uid: spec.uid, gid: spec.gid, label: `the proxy user ${config.proxy.user} (group ${config.proxy.group})` };
    const problems: string[] = [];
    const socket = accessProblem(parseWorkloadApiAddress(config.identity.workloadApiSocket), account, 'write');
    if (socket) problems.push(`Workload API socket: ${socket}`);
    // A missing binary is left to the supervisor (exit 127 names it, and installing it heals).
    if (spec.command.startsWith('/')) {
      const binary = accessProblem(spec.command, account, 'execute');
      if (binary) problems.push(`proxy.binary: ${binary}`);
    }
    return problems;
  }

  private async render(config: HarnessConfig): Promise<Record<string, string>> {
    return renderProxyEnv(config, {
      workloadName: this.options.workloadName(),
      trustAnchorsPem: await this.options.trustAnchorsPem(),
      cluster: this.options.clusterSettings?.(),
      detectedIps: this.options.detectedIps?.() ?? [],
    });
  }

  private async childSpec(config: HarnessConfig): Promise<ChildSpec> {
    const [user, group] = await Promise.all([this.users.resolveUser(config.proxy.user), this.users.resolveGroup(config.proxy.group)]);
    return {
      name: 'proxy',
      // A bare name is looked up now; a missing binary still starts (and fails with exit
      // 127 and a clear message) so installing it later heals without a harness restart.
      command: findExecutable(config.proxy.binary) ?? config.proxy.binary,
      args: [],
      env: {},
      uid: user.uid,
      gid: group.gid,
      stopGraceMs: config.proxy.shutdownGrace,
    };
  }
}

function sameSpec(a: ChildSpec, b: ChildSpec): boolean {
  return a.command === b.command && a.uid === b.uid && a.gid === b.gid && a.stopGraceMs === b.stopGraceMs && changedKeys(a, b).length === 0;
}

/** Names of environment variables that differ (values stay out of the log: trust anchors are long). */
function changedKeys(a: ChildSpec, b: ChildSpec): string[] {
  const keys = new Set([...Object.keys(a.env), ...Object.keys(b.env)]);
  return [...keys].filter((k) => a.env[k] !== b.env[k]).sort();
}
