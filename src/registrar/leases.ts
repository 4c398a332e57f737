/**
 * One coordination.k8s.io Lease per replica, renewed by that replica only: O(replicas)
 * writes, never O(workloads). Other replicas read it from the cache to decide whether the
 * holder of a workload is alive; when a Lease lapses they take over its workloads
 * through the usual grace and TTL.
 */
import type { Logger } from '../log/logger.ts';
import { Backoff } from '../util/backoff.ts';
import type { Lease, RegistrarStore } from './store.ts';

export function leaseName(replica: string): string {
  return `mesh-registrar-${replica}`;
}

/** When the Lease stops counting (ms since the epoch); 0 when it was never renewed. */
export function leaseExpiry(lease: Lease): number {
  const renewed = Date.parse(lease.spec.renewTime ?? lease.spec.acquireTime ?? '');
  if (Number.isNaN(renewed)) return 0;
  return renewed + (lease.spec.leaseDurationSeconds ?? 0) * 1000;
}

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface LeaseKeeperOptions {
  store: RegistrarStore;
  replica: string;
  namespace: string;
  durationMs: number;
  log: Logger;
}

export class LeaseKeeper {
  private timer?: NodeJS.Timeout;
  private lastRenewal = 0;
  private readonly backoff = new Backoff({ baseMs: 200, maxMs: 5000 });
  private acquireTime?: string;
  private stopped = false;
  private current?: Lease;

  constructor(private readonly options: LeaseKeeperOptions) {}

  /** Renews once (so the replica is visible before it serves), then keeps renewing at a third of the duration. */
  async start(): Promise<void> {
    await this.renew();
    this.schedule(this.options.durationMs / 3);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Whether the Lease was renewed within its duration (for /readyz). */
  healthy(): boolean {
    return Date.now() - this.lastRenewal < this.options.durationMs;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.renew().then(
        () => this.schedule(this.options.durationMs / 3),
        (err: Error) => {
          const delay = this.backoff.next();
          this.options.log.warn({ err: err.message, retryInMs: delay }, 'renewing the replica Lease failed');
          this.schedule(delay);
        },
      );
    }, ms);
  }

  private async renew(): Promise<void> {
    const name = leaseName(this.options.replica);
    // Our own last renewal is at least as new as the cache.
    const cached = this.current ?? this.options.store.listLeases().find((l) => l.metadata.name === name);
    const now = microTime(new Date());
    this.acquireTime ??= now;
    const lease: Lease = {
      metadata: { name, namespace: this.options.namespace, ...(cached?.metadata.resourceVersion ? { resourceVersion: cached.metadata.resourceVersion } : {}) },
      spec: {
        holderIdentity: this.options.replica,
        leaseDurationSeconds: Math.max(1, Math.round(this.options.durationMs / 1000)),
        acquireTime: this.acquireTime,
        renewTime: now,
      },
    };
    try {
      this.current = await this.options.store.renewLease(lease);
    } catch (err) {
      this.current = undefined;
      throw err;
    }
    this.lastRenewal = Date.now();
    this.backoff.reset();
  }
}
