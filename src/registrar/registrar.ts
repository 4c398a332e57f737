/**
 * One registrar replica: the store, its Lease, the controller, the gRPC service and the
 * admin endpoints, started in that order and stopped in reverse (the controller stops
 * writing before the streams are drained, so a shutdown never marks workloads NotReady:
 * their harnesses reconnect to another replica within the grace period).
 */
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../log/logger.ts';
import { RegistrarAdmin } from './admin.ts';
import { ClusterFacts } from './cluster-facts.ts';
import type { RegistrarConfig } from './config.ts';
import { WorkloadController } from './controller.ts';
import { EmbeddedStore } from './embedded-store.ts';
import { LeaseKeeper } from './leases.ts';
import { RegistrationServer } from './server.ts';
import type { RegistrarStore } from './store.ts';

export interface RegistrarOptions {
  config: RegistrarConfig;
  log: Logger;
  /** A store made by the caller (tests, the demo); otherwise made from config.store. */
  store?: RegistrarStore;
}

export async function createStore(config: RegistrarConfig, log: Logger): Promise<RegistrarStore> {
  if (config.store.kind === 'embedded') {
    const crds = config.store.crdFiles.map((file) => {
      try {
        return readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`store.crdFiles: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    });
    return new EmbeddedStore({ crds, leaseNamespace: config.namespace });
  }
  const { KubeStore } = await import('./kube-store.ts');
  return new KubeStore({ namespace: config.namespace, log: log.child({ component: 'store' }), ...(config.store.kubeconfig ? { kubeconfig: config.store.kubeconfig } : {}) });
}

export class Registrar {
  readonly registry = new Registry();
  store!: RegistrarStore;
  controller!: WorkloadController;
  server!: RegistrationServer;
  private leases!: LeaseKeeper;
  private facts!: ClusterFacts;
  private admin!: RegistrarAdmin;
  private synced = false;
  private draining = false;
  grpcPort = 0;
  adminPort = 0;

  constructor(private readonly options: RegistrarOptions) {}

  async start(): Promise<void> {
    const { config, log } = this.options;
    collectDefaultMetrics({ register: this.registry, prefix: 'mesh_registrar_' });
    this.store = this.options.store ?? (await createStore(config, log));
    this.admin = new RegistrarAdmin({ listen: config.adminListen, registry: this.registry, unready: () => this.unready() });
    this.adminPort = await this.admin.start();
    await this.store.start();
    this.synced = true;
    this.leases = new LeaseKeeper({ store: this.store, replica: config.replica, namespace: config.namespace, durationMs: config.leaseDuration, retireAfterMs: config.grace + config.ttl, log: log.child({ component: 'lease' }) });
    await this.leases.start();
    this.controller = new WorkloadController({
      store: this.store,
      replica: config.replica,
      grace: config.grace,
      ttl: config.ttl,
      deleteRate: config.deleteRate,
      gcPauseFraction: config.gcPauseFraction,
      stormFraction: config.stormFraction,
      stormHold: config.stormHold,
      writes: { interval: config.limits.writeInterval, burst: config.limits.writeBurst },
      log: log.child({ component: 'controller' }),
    });
    this.controller.start();
    this.facts = new ClusterFacts({ store: this.store, fallback: config.proxy, log: log.child({ component: 'cluster-facts' }), onChange: () => this.factsChanged() });
    this.facts.start();
    this.server = new RegistrationServer({
      listen: config.listen,
      certFile: config.certFile,
      keyFile: config.keyFile,
      caFile: config.caFile,
      trustDomain: config.trustDomain,
      replica: config.replica,
      heartbeatIntervalMs: config.heartbeatInterval,
      limits: config.limits,
      facts: () => this.facts.current(),
      store: this.store,
      controller: this.controller,
      log: log.child({ component: 'grpc' }),
      registry: this.registry,
    });
    this.grpcPort = await this.server.start();
    this.metrics();
    log.info({ replica: config.replica, grpcPort: this.grpcPort, adminPort: this.adminPort, store: config.store.kind }, 'mesh-registrar serving');
  }

  /** Clean shutdown: stop writing, GOAWAY the streams (harnesses move to another replica), release the Lease. */
  async stop(graceMs = 5000): Promise<void> {
    this.draining = true;
    await this.controller?.stop();
    await this.server?.drain(graceMs);
    this.facts?.stop();
    await this.leases?.release();
    await this.store?.stop();
    await this.admin?.stop();
  }

  /** linkerd-config changed what the proxies need: every session gets an update (the harness restarts its proxy only if its env changes). */
  private factsChanged(): void {
    for (const session of this.controller.sessions()) {
      const { namespace, group } = session.registration;
      const current = this.store.getGroup(namespace, group);
      if (current) session.groupChanged(current);
    }
  }

  private unready(): string[] {
    return [
      ...(this.synced ? [] : ['store caches not synced']),
      ...(this.leases && !this.leases.healthy() ? ['replica Lease not renewed within its duration'] : []),
      ...(this.grpcPort ? [] : ['gRPC server not listening']),
      ...(this.draining ? ['draining'] : []),
    ];
  }

  private metrics(): void {
    const store = this.store;
    const controller = this.controller;
    new Counter({
      name: 'mesh_registrar_api_writes_total',
      help: 'Writes to the API server (or the embedded store), by verb.',
      labelNames: ['verb'],
      registers: [this.registry],
      collect(this: Counter<'verb'>) {
        this.reset();
        for (const [verb, n] of Object.entries(store.writes())) this.inc({ verb }, n);
      },
    });
    new Gauge({ name: 'mesh_registrar_sessions', help: 'Harnesses registered through this replica.', registers: [this.registry], collect(this: Gauge) { this.set(controller.sessionCount()); } });
    new Gauge({ name: 'mesh_registrar_disconnect_storm', help: '1 while a disconnect storm holds Ready=False (Disconnected) beyond the grace.', registers: [this.registry], collect(this: Gauge) { this.set(controller.inDisconnectStorm ? 1 : 0); } });
    new Gauge({ name: 'mesh_registrar_gc_paused', help: '1 while GC is paused because too many workloads look orphaned at once.', registers: [this.registry], collect(this: Gauge) { this.set(controller.gcIsPaused ? 1 : 0); } });
  }
}
