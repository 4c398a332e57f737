/**
 * Which ExternalWorkload names each SPIFFE ID holds in each group, kept as sets so that a
 * hello costs a lookup, not a pass over the fleet (a reconnect storm brings every hello at
 * once). The controller keeps one index for the objects in the store and one for its own
 * sessions, whose objects may not be written yet. Each name points at its bucket, so a
 * fleet sharing one identity shares one key string.
 */
interface Bucket {
  key: string;
  names: Set<string>;
}

export class WorkloadIndex {
  private readonly buckets = new Map<string, Bucket>();
  private readonly bucketOf = new Map<string, Bucket>();

  static key(namespace: string, group: string, spiffeId: string): string {
    return `${namespace}\n${group}\n${spiffeId}`;
  }

  /** Files `name` (namespace/name) under `key`, or removes it with key undefined. */
  set(name: string, key: string | undefined): void {
    const before = this.bucketOf.get(name);
    if (before?.key === key) return;
    if (before) {
      before.names.delete(name);
      if (before.names.size === 0) this.buckets.delete(before.key);
    }
    if (key === undefined) {
      this.bucketOf.delete(name);
      return;
    }
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = { key, names: new Set() }));
    bucket.names.add(name);
    this.bucketOf.set(name, bucket);
  }

  get(key: string): ReadonlySet<string> {
    return this.buckets.get(key)?.names ?? new Set();
  }

  clear(): void {
    this.buckets.clear();
    this.bucketOf.clear();
  }
}
