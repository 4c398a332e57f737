/**
 * One coordination.k8s.io Lease per replica, renewed by that replica only: O(replicas)
 * writes, never O(workloads). Other replicas read it from the cache to decide whether the
 * holder of a workload is alive; when a Lease lapses they take over its workloads
 * through the usual grace and TTL.
 *
 * Every pod that ever ran would leave its Lease behind, so:
 * - a replica that stops cleanly releases its Lease (it lapses at once: the others count
 *   the grace for its workloads from now, not from a renewal that will never come);
 * - the live replicas delete a Lease that lapsed more than the grace plus the TTL ago: by
 *   then no workload can depend on it (its workloads went Ready=False after the grace and
 *   are deleted after the TTL, or were taken over). Deleting it earlier, on shutdown or
 *   by an ownerReference to the Pod, would make the others count its workloads absent
 *   since their own start, and delete them before their TTL.
 * The delete is conditional on the resourceVersion, so a replica that comes back and
 * renews in the meantime keeps its Lease; replicas racing to delete the same one are fine.
 */
import type { Logger } from '../log/logger.ts';
import { Backoff } from '../util/backoff.ts';
import { ConflictError, NotFoundError, type Lease, type RegistrarStore } from './store.ts';

const LEASE_PREFIX = 'mesh-registrar-';

export function leaseName(replica: string): string {
  return `${LEASE_PREFIX}${replica}`;
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
  /** A lapsed Lease of another replica is deleted this long after it lapsed (the grace plus the TTL). */
  retireAfterMs: number;
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

  /**
   * Clean shutdown, once the streams are drained: the Lease lapses now (the way client-go's
   * leader election releases one). Best effort: a Lease not released lapses by itself.
   */
  async release(): Promise<void> {
    this.stop();
    if (!this.current) return;
    try {
      await this.options.store.renewLease({ metadata: this.current.metadata, spec: { ...this.current.spec, leaseDurationSeconds: 1, renewTime: microTime(new Date()) } });
      this.options.log.info({ lease: leaseName(this.options.replica) }, 'released the replica Lease');
    } catch (err) {
      this.options.log.warn({ err: (err as Error).message }, 'releasing the replica Lease failed; it lapses by itself');
    }
  }

  /** Deletes the other replicas' Leases that lapsed more than retireAfterMs ago. */
  private async retireLapsed(): Promise<void> {
    const own = leaseName(this.options.replica);
    const now = Date.now();
    for (const lease of this.options.store.listLeases()) {
      const { name, resourceVersion } = lease.metadata;
      const expiry = leaseExpiry(lease);
      if (name === own || !name.startsWith(LEASE_PREFIX) || !resourceVersion || expiry === 0 || now - expiry <= this.options.retireAfterMs) continue;
      try {
        await this.options.store.deleteLease(name, resourceVersion);
        this.options.log.info({ lease: name, lapsedAt: new Date(expiry).toISOString() }, 'deleted the Lease of a replica that is gone');
      } catch (err) {
        // Renewed meanwhile (its replica is back), or another replica deleted it first.
        if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
      }
    }
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
    // Housekeeping after our own renewal, never in its way.
    await this.retireLapsed().catch((err: Error) => this.options.log.warn({ err: err.message }, 'deleting lapsed replica Leases failed; trying again at the next renewal'));
  }
}
