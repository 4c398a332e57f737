import { AdminServer, type AdminSource } from '../admin/server.ts';
import type { HarnessMetrics } from '../admin/metrics.ts';
import type { HarnessConfig } from '../config/types.ts';
import type { Logger } from '../log/logger.ts';
import { allReady, type Component, type ComponentState } from './component.ts';

export interface HarnessOptions {
  config: HarnessConfig;
  log: Logger;
  metrics: HarnessMetrics;
  /** In start order; stopped in reverse. */
  components: Component[];
  version: string;
  startedAt?: Date;
}

/**
 * The daemon's core: serves the admin API first (so /live answers while the rest comes
 * up), starts components in order, stops them in reverse order.
 */
export class Harness implements AdminSource {
  private readonly admin: AdminServer;
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: HarnessOptions) {
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

  components(): ComponentState[] {
    return this.options.components.map((c) => c.state());
  }

  ready(): boolean {
    return allReady(this.components());
  }

  /** What the harness waits for, from the first component that is not ready. */
  statusText(): string {
    if (this.stopping) return 'stopping';
    const waiting = this.components().find((s) => !s.ready);
    if (!waiting) return this.options.components.length ? 'ready: all components converged' : 'no components configured';
    return `${waiting.name}: ${waiting.message}`;
  }

  async start(): Promise<void> {
    const address = await this.admin.listen();
    this.options.log.info({ address: address.address, port: address.port }, 'admin server listening');
    for (const component of this.options.components) {
      await component.start();
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const errors: string[] = [];
    for (const component of [...this.options.components].reverse()) {
      try {
        await component.stop();
      } catch (err) {
        errors.push(`${component.name}: ${(err as Error).message}`);
        this.options.log.error({ err, component: component.name }, 'component failed to stop');
      }
    }
    await this.admin.close();
    if (errors.length) throw new Error(`shutdown incomplete: ${errors.join('; ')}`);
  }
}
