/**
 * The registrar's reconciler. Level-triggered: for every workload it knows of (a live
 * stream here, a stream that dropped here, or an object whose replica's Lease lapsed) it
 * computes the desired ExternalWorkload and Ready condition from the session and the
 * group, compares them with the store's cache, and writes only the difference.
 * Heartbeats never reach it, so a steady fleet costs zero writes. A failed write is
 * retried with backoff until it lands; nothing is lost until the next reconnect.
 *
 * Liveness: a dropped stream keeps its Ready condition for `grace` (a reconnect to any
 * replica in that window is invisible), then Ready=False (Disconnected); after `ttl` the
 * object is deleted with uid/resourceVersion preconditions, after re-checking from the
 * cache that no replica took the workload over. Objects held by a replica whose Lease
 * lapsed go through the same grace and TTL, counted from the Lease's expiry.
 */
import type { Logger } from '../log/logger.ts';
import type { WorkloadState } from '../protocol/registration.ts';
import { Backoff } from '../util/backoff.ts';
import {
  ANNOTATION,
  desiredWorkload,
  LABEL,
  mergeForUpdate,
  readyCondition,
  registrationKey,
  reportedReadiness,
  statusUpdate,
  workloadMatches,
  type Readiness,
  type Registration,
} from './desired.ts';
import { leaseExpiry, leaseName } from './leases.ts';
import { ConflictError, NotFoundError, type ExternalGroup, type ExternalWorkload, type RegistrarStore, type StoreEvent } from './store.ts';
import { WorkloadIndex } from './workload-index.ts';

/** A live stream, as the controller sees it. */
export interface Session {
  readonly registration: Registration;
  state: WorkloadState;
  readonly connectedAt: Date;
  readonly peer: string;
  /** Ends the stream, telling the harness why (another stream took the workload over, the group went away). */
  close(reason: string, message: string): void;
  /** Sends the group's new settings. */
  groupChanged(group: ExternalGroup): void;
}

export interface ControllerOptions {
  store: RegistrarStore;
  replica: string;
  grace: number;
  ttl: number;
  deleteRate: number;
  gcPauseFraction: number;
  /** Disconnect storm: more than this fraction of the workloads (of at least 10) dropped within grace + stormHold. */
  stormFraction?: number;
  /** How long beyond the grace a storm holds Ready=False (Disconnected), and the longest GC pause; 0 turns both guards off. */
  stormHold?: number;
  /** Writes (spec and status together) per workload: `burst` at once, then one per `interval` ms; interval 0 for no limit. */
  writes?: { interval: number; burst: number };
  log: Logger;
  now?: () => number;
}

export type ClaimResult = { ok: true } | { ok: false; reason: 'NameTaken' | 'TooManyWorkloads'; message: string };

interface Tracked {
  registration: Registration;
  session?: Session;
  /** When the last stream here ended (ms). */
  goneSince?: number;
  goodbye?: boolean;
}

/** Below this many workloads the orphan-storm guard does not apply (a small fleet may all go at once). */
const GC_GUARD_MINIMUM = 10;
const RESYNC_MS = 15_000;
const TICK_MS = 250;

export class WorkloadController {
  private readonly tracked = new Map<string, Tracked>();
  private readonly dirty = new Set<string>();
  private readonly wakeAt = new Map<string, number>();
  private readonly retry = new Map<string, Backoff>();
  /**
   * Our own last write per object, with the resourceVersion the cache held when the write
   * went out: newer than the cache only while the cache still holds that version.
   */
  private readonly pending = new Map<string, { object: ExternalWorkload; base: string | undefined }>();
  private readonly now: () => number;
  private readonly startedAt: number;
  private running = false;
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe?: () => void;
  private deleteTokens: number;
  private lastRefill: number;
  private gcPaused = false;
  private gcPausedAt = 0;
  /** GC ran out its longest pause (stormHold) in this orphan storm: it does not pause again until the storm is over. */
  private gcPauseSpent = false;
  private storm = false;
  /** Workloads whose replica's Lease lapsed within the storm window, as of the last resync. */
  private lapsedRecently: string[] = [];
  /**
   * Workloads that were away during a storm, with the last moment of the storm they were
   * seen away in: that absence waits until grace + stormHold for Ready=False (Disconnected),
   * even once the storm is over. A later, separate absence is not held.
   */
  private readonly held = new Map<string, number>();
  /**
   * When each registrar-managed ExternalWorkload that is Ready=True was created (ms), kept from
   * the watch: what the storm guard counts each second, without a pass over the store.
   */
  private readonly readyCreatedAt = new Map<string, number>();
  private ticks = 0;
  /**
   * Each workload's write budget (limits.writeBurst, limits.writeInterval) as the moment it
   * is full again: one number per workload, and none once it is full (pruned at resync).
   */
  private readonly budgetFullAt = new Map<string, number>();
  /** Names per (namespace, group, SPIFFE ID): the objects in the store, and our sessions. */
  private readonly index = new WorkloadIndex();
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly options: ControllerOptions) {
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.deleteTokens = Math.max(1, options.deleteRate);
    this.lastRefill = this.startedAt;
  }

  start(): void {
    this.unsubscribe = this.options.store.subscribe((event) => this.onStoreEvent(event));
    this.resync();
    this.timers.push(setInterval(() => this.tick(), TICK_MS), setInterval(() => this.resync(), RESYNC_MS));
    for (const timer of this.timers) timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    this.unsubscribe?.();
    await this.loop;
  }

  /** Whether a disconnect storm holds Ready=False beyond the grace (metrics). */
  get inDisconnectStorm(): boolean {
    return this.storm;
  }

  /** Whether GC is paused by the orphan-storm guard (for /readyz detail and metrics). */
  get gcIsPaused(): boolean {
    return this.gcPaused;
  }

  sessionCount(): number {
    let n = 0;
    for (const t of this.tracked.values()) if (t.session) n += 1;
    return n;
  }

  sessions(): Session[] {
    return [...this.tracked.values()].flatMap((t) => (t.session ? [t.session] : []));
  }

  /**
   * Whether a registration may take its name, and whether its identity may hold one more
   * workload in the group. The same machine (identity, node and the same non-empty machine
   * id) takes over its own older stream at once. A machine with another or no machine id
   * takes a name over only once the holder said goodbye or has been gone for the grace
   * period, unless the group says `nameTakeover: Immediate`: an identity shared by several
   * machines must not let one of them push another out. Refusals name who holds the name.
   */
  claim(registration: Registration, group: ExternalGroup): ClaimResult {
    const id = key(registration.namespace, registration.name);
    const local = this.tracked.get(id);
    const wanted = registrationKey(registration.spiffeId, registration.nodeName);
    const immediate = group.spec.nameTakeover === 'Immediate';
    const where = `ExternalWorkload ${registration.namespace}/${registration.name}`;
    const taken = (message: string): ClaimResult => ({ ok: false, reason: 'NameTaken', message });
    if (local) {
      const held = local.registration;
      if (registrationKey(held.spiffeId, held.nodeName) !== wanted) {
        return taken(local.session
          ? `${where} is held by ${describe(held)}, connected since ${local.session.connectedAt.toISOString()} from ${local.session.peer}`
          : `${where} belongs to ${describe(held)}, disconnected; it is deleted after the TTL`);
      }
      if (!immediate && !sameMachine(held.machineId, registration.machineId)) {
        if (local.session) return taken(`${where} is held by ${describe(held)}, connected since ${local.session.connectedAt.toISOString()} from ${local.session.peer}; ${TAKEOVER_RULE}`);
        const graceEnds = (local.goneSince ?? this.now()) + this.options.grace;
        if (!local.goodbye && graceEnds > this.now()) return taken(`${where} is held by ${describe(held)}, without a stream since ${new Date(local.goneSince ?? this.now()).toISOString()}; ${TAKEOVER_RULE} (here at ${new Date(graceEnds).toISOString()})`);
      }
    }
    const object = this.current(id);
    if (object) {
      const holder = object.metadata.annotations?.[ANNOTATION.holder];
      const objectKey = registrationKey(object.spec.meshTLS.identity, object.metadata.annotations?.[ANNOTATION.nodeName] ?? '');
      const first = `node ${object.metadata.annotations?.[ANNOTATION.nodeName] ?? '(unknown)'} (${object.spec.meshTLS.identity})`;
      if (!holder) {
        return taken(`${where} exists and is not managed by mesh-registrar (${first}); delete it or choose another workload.name`);
      }
      if (objectKey !== wanted) return taken(`${where} belongs to ${first}`);
      const machine = object.metadata.annotations?.[ANNOTATION.machineId] ?? '';
      if (!local && !immediate && !sameMachine(machine, registration.machineId) && !holderGone(object)) {
        return taken(`${where} is held by ${first}${machine ? ` on machine ${machine.slice(0, 12)}` : ' (no machine id)'} through replica ${holder}; ${TAKEOVER_RULE}`);
      }
    }
    const limit = group.spec.maxWorkloadsPerIdentity ?? 1;
    const bucket = WorkloadIndex.key(registration.namespace, registration.group, registration.spiffeId);
    const held = this.index.countOthers(bucket, id);
    if (held >= limit) {
      const names = this.index.others(bucket, id, 5).map((n) => split(n)[1]).join(', ');
      return {
        ok: false,
        reason: 'TooManyWorkloads',
        message: `${registration.spiffeId} already holds ${held} ExternalWorkload${held === 1 ? '' : 's'} in ExternalGroup ${registration.namespace}/${registration.group} (${names}${held > 5 ? ', ...' : ''}) and the group's spec.maxWorkloadsPerIdentity is ${limit}: give each machine its own SPIFFE ID, raise spec.maxWorkloadsPerIdentity, or delete an ExternalWorkload whose machine is gone (the registrar deletes one after its TTL)`,
      };
    }
    return { ok: true };
  }

  /** A stream was accepted (after claim()). An older stream of the same machine is closed. */
  attach(session: Session): void {
    const id = key(session.registration.namespace, session.registration.name);
    const previous = this.tracked.get(id);
    if (previous?.session && previous.session !== session) {
      const same = sameMachine(previous.registration.machineId, session.registration.machineId);
      previous.session.close('Replaced', same ? 'a newer stream from the same machine took over' : `${describe(session.registration)} took the name over (the group's spec.nameTakeover is Immediate)`);
    }
    this.tracked.set(id, { registration: session.registration, session });
    const { namespace, group, spiffeId } = session.registration;
    this.index.set('session', id, WorkloadIndex.key(namespace, group, spiffeId));
    this.held.delete(id);
    this.markDirty(id);
  }

  setState(session: Session, state: WorkloadState): void {
    session.state = state;
    const id = key(session.registration.namespace, session.registration.name);
    if (this.tracked.get(id)?.session === session) this.markDirty(id);
  }

  /** A clean stop: Ready=False at once. */
  goodbye(session: Session): void {
    this.detach(session, true);
  }

  /** The stream ended without a goodbye: the grace period starts. */
  detach(session: Session, goodbye = false): void {
    const id = key(session.registration.namespace, session.registration.name);
    const entry = this.tracked.get(id);
    if (!entry || entry.session !== session) return;
    this.tracked.set(id, { registration: entry.registration, goneSince: this.now(), goodbye: goodbye || undefined });
    this.markDirty(id);
  }

  /** The Ready condition a workload should have now, or undefined to leave it as it is (within grace). */
  private readiness(id: string, entry: Tracked | undefined, absentSince: number | undefined): Readiness | 'delete' | undefined {
    if (entry?.session) return reportedReadiness(entry.session.state);
    if (absentSince === undefined) return undefined;
    const gone = this.now() - absentSince;
    if (gone >= this.options.ttl) return 'delete';
    if (entry?.goodbye) return { ready: false, reason: 'Draining', message: 'the harness said goodbye (clean stop)' };
    if (gone >= this.options.grace) {
      // A storm (a replica restart, a partition between the fleet and the registrar): most of
      // these machines are alive and reconnecting; hold a while instead of flapping them all.
      const heldAt = this.held.get(id);
      if ((this.storm || (heldAt !== undefined && heldAt >= absentSince)) && gone < this.options.grace + this.stormHold()) return undefined;
      this.held.delete(id);
      return { ready: false, reason: 'Disconnected', message: `no stream from the harness since ${new Date(absentSince).toISOString()} (grace ${this.options.grace / 1000}s)` };
    }
    return undefined;
  }

  private holderAlive(holder: string): boolean {
    const lease = this.options.store.listLeases().find((l) => l.metadata.name === leaseName(holder));
    return lease !== undefined && leaseExpiry(lease) > this.now();
  }

  /**
   * Since when a workload without a stream here has been without a stream anywhere, or
   * undefined when it is someone else's live responsibility (or not ours at all).
   */
  private absentSince(id: string, entry: Tracked | undefined, object: ExternalWorkload | undefined): number | undefined {
    if (entry?.session) return undefined;
    const holder = object?.metadata.annotations?.[ANNOTATION.holder];
    if (object && holder === undefined) return undefined;
    if (!object || holder === this.options.replica) return entry?.goneSince ?? this.startedAt;
    const lease = this.options.store.listLeases().find((l) => l.metadata.name === leaseName(holder!));
    // No Lease at all: its replica is long gone (or never renewed); count from our own start.
    if (!lease) return this.startedAt;
    const expiry = leaseExpiry(lease);
    if (expiry > this.now()) {
      this.wake(id, expiry + 1);
      return undefined;
    }
    return expiry;
  }

  private async reconcile(id: string): Promise<void> {
    const entry = this.tracked.get(id);
    const object = this.current(id);
    const [namespace, name] = split(id);
    if (entry && object && object.metadata.annotations?.[ANNOTATION.holder] !== this.options.replica && !entry.session) {
      // Another replica took the workload over (a reconnect there): our disconnect is history.
      this.forget(id);
      return;
    }
    if (entry?.session && object) {
      const holder = object.metadata.annotations?.[ANNOTATION.holder];
      const connectedAt = entry.session.connectedAt.getTime();
      if (holder && holder !== this.options.replica && this.holderAlive(holder) && this.takenOverAfter(object, connectedAt)) {
        entry.session.close('Replaced', `replica ${holder} holds a newer stream for this workload`);
        this.forget(id);
        return;
      }
    }
    const absentSince = this.absentSince(id, entry, object);
    if (!entry?.session && absentSince === undefined) return;
    const readiness = this.readiness(id, entry, absentSince);

    if (readiness === 'delete') {
      if (object) await this.deleteObject(id, object);
      this.forget(id);
      return;
    }
    if (absentSince !== undefined) {
      // Wake up for the next deadline: the end of the grace period, then the TTL.
      const next = [absentSince + this.options.grace, absentSince + this.options.grace + this.stormHold(), absentSince + this.options.ttl].find((t) => t > this.now());
      if (next !== undefined) this.wake(id, next + 1);
    }
    if (!entry?.session) {
      // Already NotReady (a goodbye's Draining, an earlier Disconnected): the reason stays, no write.
      if (readiness && object && readyCondition(object)?.status !== 'False' && !this.mustWait(id) && (await this.writeStatus(object, readiness))) this.spend(id);
      return;
    }

    const group = this.options.store.getGroup(namespace, entry.registration.group);
    if (!group) {
      entry.session.close('GroupNotFound', `ExternalGroup ${namespace}/${entry.registration.group} no longer exists`);
      this.forget(id);
      return;
    }
    const desired = desiredWorkload(group, entry.registration, this.options.replica);
    let current = object;
    let wrote = false;
    if (!current) {
      const base = this.cachedVersion(id);
      current = await this.options.store.createWorkload(desired);
      this.options.log.info({ workload: id, identity: entry.registration.spiffeId, node: entry.registration.nodeName }, 'created ExternalWorkload');
      this.pending.set(id, { object: current, base });
    } else {
      const update = !workloadMatches(current, desired);
      // A state that changes faster than the budget allows is coalesced: the latest wins.
      if ((update || (readiness && statusUpdate(current, readiness, new Date(this.now())))) && this.mustWait(id)) return;
      if (update) {
        const before = current.metadata.annotations?.[ANNOTATION.holder];
        const base = this.cachedVersion(id);
        current = await this.options.store.updateWorkload(mergeForUpdate(current, desired));
        wrote = true;
        if (before !== this.options.replica) this.options.log.info({ workload: id, from: before }, 'took over the ExternalWorkload');
        this.pending.set(id, { object: current, base });
      }
    }
    if (readiness && (await this.writeStatus(current, readiness))) wrote = true;
    // Spec and status written in one reconcile spend one write of the budget.
    if (wrote) this.spend(id);
  }

  /**
   * Whether a write to this workload has to wait for its budget (limits.writeBurst writes at
   * once, then one per limits.writeInterval); a wake-up is set for when it may go.
   * Level-triggered, the write that then goes is computed from the latest state: nothing is
   * lost, only intermediate states are skipped.
   */
  private mustWait(id: string): boolean {
    const limit = this.options.writes;
    const fullAt = this.budgetFullAt.get(id);
    if (!limit || limit.interval <= 0 || fullAt === undefined) return false;
    // Less than one write left while the budget is more than burst - 1 writes from full.
    const mayWriteAt = fullAt - (limit.burst - 1) * limit.interval;
    if (mayWriteAt <= this.now()) return false;
    this.wake(id, mayWriteAt);
    return true;
  }

  private spend(id: string): void {
    const limit = this.options.writes;
    if (!limit || limit.interval <= 0) return;
    this.budgetFullAt.set(id, Math.max(this.now(), this.budgetFullAt.get(id) ?? 0) + limit.interval);
  }

  /** Whether the object's holder changed after our stream started (a newer stream elsewhere). */
  private takenOverAfter(object: ExternalWorkload, connectedAt: number): boolean {
    const seen = this.holderSeenAt.get(key(object.metadata.namespace, object.metadata.name));
    return seen !== undefined && seen > connectedAt;
  }

  private readonly holderSeenAt = new Map<string, number>();
  /** Each group's uid and generation as last seen: its spec changed only when they did. */
  private readonly groupSeen = new Map<string, string>();

  /** Writes the Ready condition when it differs; whether it did. */
  private async writeStatus(current: ExternalWorkload, readiness: Readiness): Promise<boolean> {
    const next = statusUpdate(current, readiness, new Date(this.now()));
    if (!next) return false;
    const id = key(current.metadata.namespace, current.metadata.name);
    const base = this.cachedVersion(id);
    const written = await this.options.store.updateWorkloadStatus(next);
    this.pending.set(id, { object: written, base });
    this.options.log.info({ workload: id, ready: readiness.ready, reason: readiness.reason }, `Ready=${readiness.ready ? 'True' : 'False'} (${readiness.reason})`);
    return true;
  }

  private async deleteObject(id: string, object: ExternalWorkload): Promise<void> {
    if (this.gcPaused) {
      this.wake(id, this.now() + 1000);
      return;
    }
    this.refillDeleteTokens();
    if (this.deleteTokens < 1) {
      this.wake(id, this.now() + Math.ceil(1000 / this.options.deleteRate));
      return;
    }
    this.deleteTokens -= 1;
    await this.options.store.deleteWorkload(object.metadata.namespace, object.metadata.name, {
      uid: object.metadata.uid!,
      resourceVersion: object.metadata.resourceVersion!,
    });
    this.pending.delete(id);
    this.options.log.info({ workload: id, identity: object.spec.meshTLS.identity }, `deleted ExternalWorkload: no harness for ${this.options.ttl / 1000}s`);
  }

  private refillDeleteTokens(): void {
    const now = this.now();
    this.deleteTokens = Math.min(Math.max(1, this.options.deleteRate), this.deleteTokens + ((now - this.lastRefill) / 1000) * this.options.deleteRate);
    this.lastRefill = now;
  }

  /**
   * The freshest view of an object: our own last write until the watch catches up. A write
   * whose response came after its own watch event, or anyone's later change, has moved the
   * cache past the version the write replaced: then the cache is the fresher one (a stale
   * write would only earn a conflict).
   */
  private current(id: string): ExternalWorkload | undefined {
    const [namespace, name] = split(id);
    const cached = this.options.store.getWorkload(namespace, name);
    const pending = this.pending.get(id);
    if (pending && pending.base === cached?.metadata.resourceVersion) return pending.object;
    this.pending.delete(id);
    return cached;
  }

  private cachedVersion(id: string): string | undefined {
    const [namespace, name] = split(id);
    return this.options.store.getWorkload(namespace, name)?.metadata.resourceVersion;
  }

  private onStoreEvent(event: StoreEvent): void {
    if (event.kind === 'ExternalWorkload') {
      const id = key(event.object.metadata.namespace, event.object.metadata.name);
      const pending = this.pending.get(id);
      if (pending && (event.type === 'deleted' || pending.object.metadata.resourceVersion === event.object.metadata.resourceVersion)) this.pending.delete(id);
      const holder = event.object.metadata.annotations?.[ANNOTATION.holder];
      if (holder && holder !== this.options.replica) this.holderSeenAt.set(id, this.now());
      if (event.type === 'deleted') this.holderSeenAt.delete(id);
      this.index.set('stored', id, event.type === 'deleted' ? undefined : indexKey(event.object));
      this.noteReady(id, event.type === 'deleted' ? undefined : event.object);
      if (this.tracked.has(id) || holder !== undefined) this.markDirty(id);
    } else if (event.kind === 'ExternalGroup') {
      const { namespace, name, generation, uid } = event.object.metadata;
      const groupId = key(namespace, name);
      const seen = this.groupSeen.get(groupId);
      if (event.type === 'deleted') this.groupSeen.delete(groupId);
      else this.groupSeen.set(groupId, `${uid}/${generation}`);
      // A status write (the group's own, every time its counts change) is no template change.
      if (event.type === 'modified' && seen === `${uid}/${generation}`) return;
      for (const [id, entry] of this.tracked) {
        if (entry.registration.namespace !== event.object.metadata.namespace || entry.registration.group !== event.object.metadata.name) continue;
        if (event.type === 'modified' && entry.session) entry.session.groupChanged(event.object);
        this.markDirty(id);
      }
    } else if (event.kind !== 'Service') {
      this.resync();
    }
  }

  private markDirty(id: string): void {
    this.dirty.add(id);
    if (!this.running && !this.stopped) {
      this.running = true;
      this.loop = this.drain();
    }
  }

  private wake(id: string, at: number): void {
    const existing = this.wakeAt.get(id);
    if (existing === undefined || at < existing) this.wakeAt.set(id, at);
  }

  private async drain(): Promise<void> {
    // Yield first so a burst of events (a relist, a reconnect storm) is handled as one batch.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.dirty.size && !this.stopped) {
      const [id] = this.dirty;
      this.dirty.delete(id!);
      try {
        await this.reconcile(id!);
        this.retry.delete(id!);
      } catch (err) {
        if (err instanceof ConflictError || err instanceof NotFoundError) this.pending.delete(id!);
        let backoff = this.retry.get(id!);
        if (!backoff) this.retry.set(id!, (backoff = new Backoff({ baseMs: 100, maxMs: 30_000 })));
        const delay = backoff.next();
        const level = err instanceof ConflictError ? 'debug' : 'warn';
        this.options.log[level]({ workload: id, err: (err as Error).message, retryInMs: delay }, 'write failed; retrying');
        this.wake(id!, this.now() + delay);
      }
    }
    this.running = false;
  }

  private forget(id: string): void {
    this.tracked.delete(id);
    this.held.delete(id);
    this.budgetFullAt.delete(id);
    this.index.set('session', id, undefined);
  }

  private stormHold(): number {
    return this.options.stormHold ?? 0;
  }

  /**
   * The disconnect-storm guard: when more than stormFraction of the workloads lost their
   * stream within grace + stormHold (counted here each second: our own dropped streams, and
   * from the last resync those of replicas whose Lease lapsed), Ready=False (Disconnected)
   * waits up to stormHold beyond the grace. A goodbye, a proxy or probe failure is never held.
   * Like Kubernetes' node lifecycle controller in a disrupted zone: when most go at once, the
   * cause is more likely between them and us than in each of them.
   *
   * Only workloads that were serving count, on both sides of the fraction: Ready when their
   * stream dropped, and older than the storm window. Junk (never Ready, or made for the
   * occasion) can neither raise a storm nor be held by one.
   */
  private judgeStorm(): void {
    const hold = this.stormHold();
    const fraction = this.options.stormFraction ?? 1;
    if (hold <= 0) return;
    const window = this.options.grace + hold;
    const now = this.now();
    const candidates = [...this.lapsedRecently];
    for (const [id, entry] of this.tracked) {
      if (!entry.session && !entry.goodbye && entry.goneSince !== undefined && now - entry.goneSince < window) candidates.push(id);
    }
    // Serving: Ready (still, within its grace) and created before the storm window.
    const createdBefore = now - window;
    const away = candidates.filter((id) => (this.readyCreatedAt.get(id) ?? Infinity) <= createdBefore);
    const dropped = away.length;
    let total = 0;
    if (dropped >= GC_GUARD_MINIMUM) {
      for (const created of this.readyCreatedAt.values()) if (created <= createdBefore) total += 1;
      total = Math.max(dropped, total);
    }
    const storm = total >= GC_GUARD_MINIMUM && dropped > total * fraction;
    if (storm) for (const id of away) this.held.set(id, now);
    if (storm === this.storm) return;
    this.storm = storm;
    if (storm) {
      this.options.log.warn({ dropped, workloads: total }, `disconnect storm: ${dropped} of ${total} workloads lost their stream within ${window / 1000}s (more than ${fraction * 100}%); Ready=False (Disconnected) waits up to ${hold / 1000}s beyond the grace for them to reconnect`);
    } else {
      // Those that were away during it keep their hold until grace + stormHold: they may be reconnecting still.
      this.options.log.info({ dropped, workloads: total, held: this.held.size }, 'disconnect storm over');
    }
  }

  private noteReady(id: string, object: ExternalWorkload | undefined): void {
    const created = Date.parse(object?.metadata.creationTimestamp ?? '');
    if (object?.metadata.annotations?.[ANNOTATION.holder] !== undefined && readyCondition(object)?.status === 'True' && Number.isFinite(created)) this.readyCreatedAt.set(id, created);
    else this.readyCreatedAt.delete(id);
  }

  private tick(): void {
    if (++this.ticks % Math.round(1000 / TICK_MS) === 0) this.judgeStorm();
    const now = this.now();
    if (this.gcPaused && now - this.gcPausedAt >= this.stormHold()) {
      // Whatever holds the count up (junk that never goes away by itself, a fleet that is really gone) must not stop GC for good.
      this.gcPaused = false;
      this.gcPauseSpent = true;
      this.options.log.warn(`GC resumed: it paused for stormHold (${this.stormHold() / 1000}s), the longest it pauses, and deletes again at deleteRate whatever looks orphaned`);
    }
    for (const [id, at] of this.wakeAt) {
      if (at <= now) {
        this.wakeAt.delete(id);
        this.markDirty(id);
      }
    }
  }

  /**
   * Everything that may need action: our tracked workloads, objects we hold, and objects
   * whose replica's Lease lapsed. Also decides the orphan-storm guard, and rebuilds the
   * index of names per identity (a relist may have missed a delete event).
   */
  private resync(): void {
    const all = this.options.store.listWorkloads();
    for (const [id, fullAt] of this.budgetFullAt) if (fullAt <= this.now()) this.budgetFullAt.delete(id);
    const present = new Set<string>();
    for (const w of all) {
      const id = key(w.metadata.namespace, w.metadata.name);
      present.add(id);
      this.index.set('stored', id, indexKey(w));
      this.noteReady(id, w);
    }
    this.index.retain('stored', (id) => present.has(id));
    for (const id of this.readyCreatedAt.keys()) if (!present.has(id)) this.readyCreatedAt.delete(id);
    const workloads = all.filter((w) => w.metadata.annotations?.[ANNOTATION.holder] !== undefined);
    let orphaned = 0;
    const lapsed: string[] = [];
    for (const w of workloads) {
      const id = key(w.metadata.namespace, w.metadata.name);
      const holder = w.metadata.annotations![ANNOTATION.holder]!;
      const entry = this.tracked.get(id);
      if (entry?.session) continue;
      if (holder === this.options.replica || !this.holderAlive(holder)) {
        const since = this.absentSince(id, entry, w);
        if (since !== undefined && this.now() - since >= this.options.ttl) orphaned += 1;
        if (holder !== this.options.replica && !entry && since !== undefined && this.now() - since < this.options.grace + this.stormHold()) lapsed.push(id);
        this.markDirty(id);
      }
    }
    for (const id of this.tracked.keys()) this.markDirty(id);
    this.lapsedRecently = lapsed;
    this.judgeStorm();
    const orphanStorm = workloads.length >= GC_GUARD_MINIMUM && orphaned > workloads.length * this.options.gcPauseFraction;
    if (!orphanStorm) {
      this.gcPauseSpent = false;
      if (this.gcPaused) {
        this.gcPaused = false;
        this.options.log.info('GC resumed');
      }
    } else if (!this.gcPaused && !this.gcPauseSpent && this.stormHold() > 0) {
      this.gcPaused = true;
      this.gcPausedAt = this.now();
      this.options.log.warn({ orphaned, workloads: workloads.length }, `GC paused: ${orphaned} of ${workloads.length} ExternalWorkloads look orphaned at once (more than ${this.options.gcPauseFraction * 100}%); deleting nothing for up to stormHold (${this.stormHold() / 1000}s) or until fewer do (a cluster-wide outage looks like this)`);
    }
  }
}

function key(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function split(id: string): [string, string] {
  const slash = id.indexOf('/');
  return [id.slice(0, slash), id.slice(slash + 1)];
}

function describe(registration: Registration): string {
  return `node ${registration.nodeName} (${registration.spiffeId}${registration.machineId ? `, machine ${registration.machineId.slice(0, 12)}` : ''})`;
}

/** One machine for sure: the same non-empty machine id (an empty one proves nothing). */
function sameMachine(held: string, claimed: string): boolean {
  return held !== '' && held === claimed;
}

/** Whether the holder of an object is gone: it said goodbye, or its grace period ended without a stream (as the holding replica wrote). */
function holderGone(object: ExternalWorkload): boolean {
  const ready = readyCondition(object);
  return ready?.status === 'False' && (ready.reason === 'Disconnected' || ready.reason === 'Draining');
}

/** Where an object is filed in the index of names per identity; undefined for objects of no group. */
function indexKey(object: ExternalWorkload): string | undefined {
  const group = object.metadata.labels?.[LABEL.group];
  return group === undefined ? undefined : WorkloadIndex.key(object.metadata.namespace, group, object.spec.meshTLS.identity);
}

const TAKEOVER_RULE = 'a machine with another or no machine id takes a name over only once its holder said goodbye or has been without a stream for the grace period (or at once where the group sets spec.nameTakeover: Immediate); if this is the same machine, its /etc/machine-id changed or cannot be read';
