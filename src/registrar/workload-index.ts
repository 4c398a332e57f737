/**
 * Which ExternalWorkload names each SPIFFE ID holds in each group, from two sources: the
 * objects in the store and the controller's own sessions, whose objects may not be written
 * yet. A name filed by both counts once. The count per (namespace, group, identity) is kept
 * as names come and go, so a hello costs a lookup, not a pass over the fleet: a fleet that
 * shares one identity brings every hello at once in a reconnect storm, and counting its
 * names per hello made the storm quadratic. Each name points at its bucket, so a fleet
 * sharing one identity shares one key string.
 */
export type IndexSource = 'stored' | 'session';

interface Bucket {
  key: string;
  /** Each name here, and how many sources file it here (1 or 2). */
  names: Map<string, number>;
}

/** Where each source files a name. */
interface Filing {
  stored?: Bucket;
  session?: Bucket;
}

export class WorkloadIndex {
  private readonly buckets = new Map<string, Bucket>();
  private readonly filings = new Map<string, Filing>();

  static key(namespace: string, group: string, spiffeId: string): string {
    return `${namespace}\n${group}\n${spiffeId}`;
  }

  /** Files `name` (namespace/name) under `key` for `source`, or removes it with key undefined. */
  set(source: IndexSource, name: string, key: string | undefined): void {
    let filing = this.filings.get(name);
    const before = filing?.[source];
    if (before?.key === key) return;
    if (before) {
      const left = before.names.get(name)! - 1;
      if (left > 0) before.names.set(name, left);
      else before.names.delete(name);
      if (before.names.size === 0) this.buckets.delete(before.key);
      filing![source] = undefined;
    }
    if (key !== undefined) {
      let bucket = this.buckets.get(key);
      if (!bucket) this.buckets.set(key, (bucket = { key, names: new Map() }));
      bucket.names.set(name, (bucket.names.get(name) ?? 0) + 1);
      if (!filing) this.filings.set(name, (filing = {}));
      filing[source] = bucket;
    }
    if (filing && !filing.stored && !filing.session) this.filings.delete(name);
  }

  /** How many names are filed under `key`, `name` left out. */
  countOthers(key: string, name: string): number {
    const names = this.buckets.get(key)?.names;
    if (!names) return 0;
    return names.size - (names.has(name) ? 1 : 0);
  }

  /** Up to `limit` of the names filed under `key`, `name` left out (for messages). */
  others(key: string, name: string, limit: number): string[] {
    const found: string[] = [];
    for (const other of this.buckets.get(key)?.names.keys() ?? []) {
      if (found.length >= limit) break;
      if (other !== name) found.push(other);
    }
    return found;
  }

  /** Removes what `source` filed for every name that `keep` rejects (a relist may have missed a delete event). */
  retain(source: IndexSource, keep: (name: string) => boolean): void {
    for (const [name, filing] of this.filings) if (filing[source] && !keep(name)) this.set(source, name, undefined);
  }
}
