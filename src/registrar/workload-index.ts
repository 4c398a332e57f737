/**
 * Which ExternalWorkload names each SPIFFE ID holds in each group, kept as sets so that a
 * hello costs a lookup, not a pass over the fleet (a reconnect storm brings every hello at
 * once). The controller keeps one index for the objects in the store and one for its own
 * sessions, whose objects may not be written yet.
 */
export class WorkloadIndex {
  private readonly names = new Map<string, Set<string>>();
  /** The key each name is filed under, to move it when its object changes. */
  private readonly keys = new Map<string, string>();

  static key(namespace: string, group: string, spiffeId: string): string {
    return `${namespace}\n${group}\n${spiffeId}`;
  }

  /** Files `name` (namespace/name) under `key`, or removes it with key undefined. */
  set(name: string, key: string | undefined): void {
    const before = this.keys.get(name);
    if (before === key) return;
    if (before !== undefined) {
      const set = this.names.get(before)!;
      set.delete(name);
      if (set.size === 0) this.names.delete(before);
    }
    if (key === undefined) {
      this.keys.delete(name);
      return;
    }
    this.keys.set(name, key);
    let set = this.names.get(key);
    if (!set) this.names.set(key, (set = new Set()));
    set.add(name);
  }

  get(key: string): ReadonlySet<string> {
    return this.names.get(key) ?? new Set();
  }

  clear(): void {
    this.names.clear();
    this.keys.clear();
  }
}
