/**
 * Workload probes as a harness component: runs the local probes (`probes.workload`) and
 * the ExternalGroup's probes (handed over by the registration side through
 * `setClusterProbes`, replaced live), aggregates them into the workload's readiness (all
 * must pass), and emits `readiness` at once on every transition.
 *
 * The component's own `ready` (systemd READY=1, /ready) does not wait for the workload:
 * the harness is ready when it is probing, whatever the probes say. A harness that waited
 * for its application would never finish starting on a VM whose application starts
 * after it. The workload's readiness goes to the ExternalWorkload's Ready condition, and
 * shows here as phase Degraded (probing works, the workload is not fit for traffic).
 */
import type { Registry } from 'prom-client';
import type { HarnessConfig, WorkloadPort } from '../config/types.ts';
import { BaseComponent, type ComponentState, type PreparedUpdate } from '../component/component.ts';
import type { Logger } from '../log/logger.ts';
import { execCheck, resolveExecAccount, type AccountResolver, type ExecAccount } from './exec.ts';
import { ProbeMetrics } from './metrics.ts';
import { ReadinessGate, type FlapDamping, type Readiness, type Verdict } from './readiness.ts';
import type { CheckContext, CheckResult } from './result.ts';
import { ProbeRunner } from './runner/client.ts';
import { describeHandler, parseProbeList, type PortRef, type Probe, type ProbeHandler } from './spec.ts';
import { clusterTargetProblem } from './targets.ts';
import { ProbeWorker, type ProbeStatus } from './worker.ts';

/** A probe from the cluster this VM will not run; it counts as failing (fail closed). */
export interface ProbeRefusal {
  /** The probe's name, or `spec.probes` for a list that does not validate. */
  probe: string;
  reason: 'ExecNotAllowed' | 'TargetNotAllowed' | 'InvalidProbe';
  message: string;
}

/** What the registration side hands over from the registrar's answer. */
export interface ClusterProbes {
  /** The ExternalGroup's `spec.probes`, as sent (validated again here). */
  probes: unknown;
  /** The group template's ports, so probes can name them. */
  templatePorts?: Array<{ port: number; name?: string }>;
  /** `namespace/name` of the ExternalGroup, for messages. */
  group?: string;
}

export interface ProbesComponentOptions {
  config: HarnessConfig;
  log: Logger;
  registry: Registry;
  users?: AccountResolver;
  damping?: FlapDamping;
  /** The workload's IPs as the harness announces them; default workload.ips. Cluster probes may target them. */
  workloadIps?: () => readonly string[];
}

interface Running {
  key: string;
  worker: ProbeWorker;
}

function probeKey(probe: Probe): string {
  return JSON.stringify(probe);
}

export class ProbesComponent extends BaseComponent {
  private config: HarnessConfig;
  private readonly metrics: ProbeMetrics;
  private readonly gate: ReadinessGate;
  private workers = new Map<string, Running>();
  private cluster: ClusterProbes | undefined;
  private clusterRefusals: ProbeRefusal[] = [];
  private execAccount: Promise<ExecAccount> | undefined;
  /** Runs the network checks (httpGet, tcpSocket, grpc) as probes.execUser, so their traffic is not exempt from redirection. */
  private readonly runner: ProbeRunner;
  private running = false;
  private transitions = 0;

  constructor(private readonly options: ProbesComponentOptions) {
    super('probes', options.log.child({ component: 'probes' }));
    this.config = options.config;
    this.metrics = new ProbeMetrics(options.registry);
    this.gate = new ReadinessGate({ ...(options.damping ? { damping: options.damping } : {}), onTransition: (r) => this.onTransition(r) }, { ready: false, reason: 'ProbePending', message: 'probes not started' });
    // Its lines carry component "probe-runner" (the supervisor's), not "probes" twice over.
    this.runner = new ProbeRunner({ log: options.log, registry: options.registry, account: () => this.account() });
  }

  override state(): ComponentState {
    const base = super.state();
    const readiness = this.gate.readiness();
    return {
      ...base,
      // Ready for the harness once probing (see the module comment); the workload's own
      // readiness is detail.workload and the phase.
      ready: this.running && (base.phase === 'Ready' || base.phase === 'Degraded' || base.phase === 'Starting'),
      detail: {
        workload: { ...readiness, since: readiness.since.toISOString() },
        probes: this.probeStatuses(),
        refusals: this.refusals(),
        allowClusterExec: this.config.probes.allowClusterExec,
        allowClusterHosts: this.config.probes.allowClusterHosts.map((c) => c.text),
        execUser: this.config.probes.execUser,
        runner: this.runner.state(),
        transitions: this.transitions,
        flaps: this.gate.flapCount(),
        ...(this.gate.heldForMs() ? { readyHeldForMs: this.gate.heldForMs() } : {}),
      },
    };
  }

  async start(): Promise<void> {
    this.running = true;
    this.reconcile();
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const { worker } of this.workers.values()) {
      worker.stop();
      this.metrics.removed(worker.status());
    }
    this.workers.clear();
    this.gate.stop();
    await this.runner.stop();
    this.setState('Stopped', { message: 'stopped' });
  }

  /** Reload: probe specs were validated with the config; the exec account is resolved again on next use. */
  async prepare(config: HarnessConfig): Promise<PreparedUpdate> {
    return {
      commit: async () => {
        const accountChanged = config.probes.execUser !== this.config.probes.execUser || config.proxy.user !== this.config.proxy.user || config.proxy.group !== this.config.proxy.group;
        this.config = config;
        if (accountChanged) {
          this.execAccount = undefined;
          // Started again by the reconcile below, as the new account, if network probes remain.
          await this.runner.stop();
        }
        if (this.running) this.reconcile();
      },
    };
  }

  /**
   * Replaces the probes that came from the cluster (the ExternalGroup's `spec.probes`).
   * Unchanged probes keep their state and schedule; exec probes are refused unless
   * `probes.allowClusterExec` is set. Returns the refusals, for the ExternalWorkload.
   */
  setClusterProbes(cluster: ClusterProbes | undefined): ProbeRefusal[] {
    this.cluster = cluster;
    if (this.running) this.reconcile();
    else this.clusterRefusals = this.desiredCluster().refusals;
    return this.refusals();
  }

  /** Cluster probes this VM refuses to run, with why. */
  refusals(): ProbeRefusal[] {
    return this.clusterRefusals.map((r) => ({ ...r }));
  }

  /** The workload's readiness as last transitioned (the message stays current). */
  readiness(): Readiness {
    return this.gate.readiness();
  }

  /**
   * Every probe's verdict in the shape the registration protocol reports (WorkloadState
   * probes): refused cluster probes included, as failing with the refusal as message.
   */
  reportedProbes(): Array<{ name: string; success: boolean; message: string; observedUnixMs: number }> {
    const now = Date.now();
    return [
      ...this.probeStatuses().map((s) => ({ name: s.name, success: s.passing, message: s.message, observedUnixMs: s.lastProbeAt ? Date.parse(s.lastProbeAt) : now })),
      ...this.clusterRefusals.map((r) => ({ name: r.probe, success: false, message: r.message, observedUnixMs: now })),
    ];
  }

  probeStatuses(): ProbeStatus[] {
    return [...this.workers.values()].map(({ worker }) => worker.status());
  }

  override on(event: 'change', listener: (state: ComponentState) => void): this;
  override on(event: 'readiness', listener: (readiness: Readiness) => void): this;
  override on(event: string, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  override off(event: 'change', listener: (state: ComponentState) => void): this;
  override off(event: 'readiness', listener: (readiness: Readiness) => void): this;
  override off(event: string, listener: (...args: any[]) => void): this {
    return super.off(event, listener);
  }

  private desiredCluster(): { probes: Probe[]; refusals: ProbeRefusal[] } {
    if (!this.cluster) return { probes: [], refusals: [] };
    const group = this.cluster.group ? ` of ExternalGroup ${this.cluster.group}` : '';
    const { probes, problems } = parseProbeList(this.cluster.probes ?? [], 'spec.probes', 'cluster');
    const refusals: ProbeRefusal[] = problems.length
      ? [{ probe: 'spec.probes', reason: 'InvalidProbe', message: `probes${group} refused: ${problems.join('; ')}` }]
      : [];
    const allowed: Probe[] = [];
    const policy = { workloadIps: this.workloadIps(), allowClusterHosts: this.config.probes.allowClusterHosts };
    for (const probe of probes) {
      const target = clusterTargetProblem(probe.handler, policy);
      if (probe.handler.kind === 'exec' && !this.config.probes.allowClusterExec) {
        refusals.push({
          probe: probe.name,
          reason: 'ExecNotAllowed',
          message: `exec probe ${probe.name}${group} refused: this VM does not run exec probes from the cluster (set probes.allowClusterExec to true in the VM's local config to allow them)`,
        });
      } else if (target) {
        refusals.push({ probe: probe.name, reason: 'TargetNotAllowed', message: `${probe.handler.kind} probe ${probe.name}${group} refused: ${target}` });
      } else {
        allowed.push(probe);
      }
    }
    return { probes: allowed, refusals };
  }

  /** Brings the running workers in line with the local and cluster probe sets. */
  private reconcile(): void {
    const local = parseProbeList(this.config.probes.workload, 'probes.workload', 'local');
    const cluster = this.desiredCluster();
    const previousRefusals = JSON.stringify(this.clusterRefusals);
    this.clusterRefusals = cluster.refusals;
    if (JSON.stringify(cluster.refusals) !== previousRefusals) {
      for (const refusal of cluster.refusals) this.log.warn({ event: 'probe-refused', probe: refusal.probe, reason: refusal.reason }, refusal.message);
    }
    this.metrics.refusals(cluster.refusals.length);

    const wanted = new Map<string, Probe>();
    for (const probe of [...local.probes, ...cluster.probes]) wanted.set(`${probe.source}/${probe.name}`, probe);
    // A probe added while the workload is ready starts as passing (see ProbeWorker).
    const initiallyPassing = this.gate.readiness().ready;
    for (const [id, running] of this.workers) {
      const probe = wanted.get(id);
      if (probe && probeKey(probe) === running.key) continue;
      running.worker.stop();
      this.metrics.removed(running.worker.status());
      this.workers.delete(id);
    }
    // The runner lives while a network probe does: a VM with exec probes only, or none, has no use for it.
    if ([...wanted.values()].some((p) => p.handler.kind !== 'exec')) this.runner.start();
    else void this.runner.stop();
    for (const [id, probe] of wanted) {
      if (this.workers.has(id)) continue;
      const worker = new ProbeWorker({
        probe,
        initiallyPassing,
        run: (context) => this.check(probe, context),
        onResult: (status, result) => this.onResult(status, result),
      });
      this.workers.set(id, { key: probeKey(probe), worker });
      this.metrics.added(worker.status());
      worker.start();
    }
    this.evaluate();
  }

  private check(probe: Probe, context: CheckContext): Promise<CheckResult> {
    const handler = probe.handler;
    if (handler.kind === 'exec') return this.exec(handler, context);
    const port = this.resolvePort(handler.port);
    if (port === undefined) return Promise.resolve({ ok: false, latencyMs: 0, message: `${describeHandler(handler)}: ${this.unknownPortText(handler.port)}` });
    return this.runner.check({ ...handler, port }, context);
  }

  /** The account exec probes and the probe runner run as; looked up again after a failure, so creating it heals without a restart. */
  private async account(): Promise<ExecAccount> {
    this.execAccount ??= resolveExecAccount(this.config.probes.execUser, this.config.proxy, this.options.users);
    try {
      return await this.execAccount;
    } catch (err) {
      this.execAccount = undefined;
      throw err;
    }
  }

  private async exec(handler: Extract<ProbeHandler, { kind: 'exec' }>, context: CheckContext): Promise<CheckResult> {
    let account: ExecAccount;
    try {
      account = await this.account();
    } catch (err) {
      return { ok: false, latencyMs: 0, message: `${describeHandler(handler)}: not run: ${(err as Error).message}` };
    }
    return execCheck(handler.command, account, context);
  }

  private workloadIps(): readonly string[] {
    return this.options.workloadIps?.() ?? this.config.workload.ips;
  }

  private resolvePort(port: PortRef): number | undefined {
    if (typeof port === 'number') return port;
    const local = this.config.workload.ports.find((p): p is WorkloadPort => typeof p === 'object' && p.name === port);
    if (local) return local.port;
    return this.cluster?.templatePorts?.find((p) => p.name === port)?.port;
  }

  private unknownPortText(port: PortRef): string {
    return `port name "${port}" is neither in workload.ports nor in the group template's ports; name the port there or give its number`;
  }

  private onResult(status: ProbeStatus, result: CheckResult): void {
    this.metrics.observe(status, result);
    this.evaluate();
  }

  private verdict(): Verdict {
    if (this.clusterRefusals.length) {
      const more = this.clusterRefusals.length > 1 ? ` (+${this.clusterRefusals.length - 1} more refused)` : '';
      return { ready: false, reason: 'ProbeRefused', message: `${this.clusterRefusals[0]!.message}${more}` };
    }
    const statuses = this.probeStatuses();
    const failing = statuses.filter((s) => !s.passing);
    if (failing.length === 0) return { ready: true, message: statuses.length ? `all ${statuses.length} probes pass` : 'no probes' };
    const first = failing[0]!;
    const more = failing.length > 1 ? `; ${failing.length - 1} more probes failing` : '';
    if (first.lastResult === 'failure') return { ready: false, reason: 'ProbeFailed', message: `${first.message} (probe ${first.name}${more})` };
    const needed = first.lastResult === 'success' ? `, ${first.consecutiveSuccesses} of ${first.successThreshold} successes` : '';
    return { ready: false, reason: 'ProbePending', message: `waiting for probe ${first.name}${needed}: ${first.message}${more}` };
  }

  private evaluate(): void {
    if (!this.running) return;
    this.gate.update(this.verdict());
    this.publish();
  }

  /** Component state from the gate's readiness and the probes' statuses. */
  private publish(): void {
    if (!this.running) return;
    const readiness = this.gate.readiness();
    this.metrics.readiness(readiness, false);
    const pending = readiness.reason === 'ProbePending';
    const phase = readiness.ready ? 'Ready' : pending ? 'Starting' : 'Degraded';
    const message = readiness.ready ? `workload ready: ${readiness.message}` : `workload not ready: ${readiness.message}`;
    // Probe results go into the state when it is read (state()), not on every check: a
    // change event per check would wake the daemon's status machinery for nothing.
    this.setState(phase, { message, lastError: readiness.ready || pending ? undefined : readiness.message });
  }

  private onTransition(readiness: Readiness): void {
    this.transitions += 1;
    this.metrics.readiness(readiness, true);
    const fields = { event: 'workload-readiness', ready: readiness.ready, reason: readiness.reason };
    if (readiness.ready) this.log.info(fields, `workload ready: ${readiness.message}`);
    else this.log.warn(fields, `workload not ready (${readiness.reason}): ${readiness.message}`);
    this.emit('readiness', readiness);
    // A held recovery ends on the gate's timer, outside evaluate().
    this.publish();
  }
}
