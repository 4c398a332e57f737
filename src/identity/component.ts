/**
 * The identity component: knows at every moment whether this machine holds a valid X.509
 * SVID for identity.spiffeId. It keeps the Workload API stream open, verifies each SVID
 * against the trust anchors file, counts rotations, and re-evaluates over time so an SVID
 * that is about to expire turns the harness unready even when the agent has gone quiet.
 */
import { readFileSync, statSync } from 'node:fs';
import type { X509Certificate } from 'node:crypto';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { Counter, Gauge, Registry } from 'prom-client';
import { METRIC, sharedCounter, sharedGauge } from '../admin/metrics.ts';
import { anchorsFileError } from '../config/host-checks.ts';
import { groupName } from '../util/users.ts';
import type { HarnessConfig } from '../config/types.ts';
import { BaseComponent, type ComponentState, type PreparedUpdate } from '../component/component.ts';
import { OperationQueue } from '../component/queue.ts';
import type { Logger } from '../log/logger.ts';
import { formatDuration } from '../util/duration.ts';
import { parseTrustAnchors, verifySvid } from './verify.ts';
import { WorkloadApiClient, type WorkloadApiError, type X509Svid } from './workload-api-client.ts';

export interface ValidatedSvid {
  svid: X509Svid;
  spiffeId: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface IdentityComponentOptions {
  config: HarnessConfig;
  log: Logger;
  registry: Registry;
  now?: () => Date;
  /** Workload API reconnect backoff (tests shorten it). */
  backoff?: { baseMs: number; maxMs: number };
}

/** Level-triggered re-check (anchors file edits, expiry) even when the agent sends nothing. */
const RESYNC_MS = 10_000;
/** setTimeout cannot wait longer than this. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Anchors = { ok: true; anchors: X509Certificate[] } | { ok: false; error: string };

export class IdentityComponent extends BaseComponent {
  private config: HarnessConfig;
  private readonly options: IdentityComponentOptions;
  private client: WorkloadApiClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** start, reload and stop, one at a time. */
  private readonly queue = new OperationQueue();

  /** The harness's own group by name, for the registration entry a PermissionDenied asks for. */
  private groupSelector = `unix:gid:${process.getgid?.() ?? '<gid of the harness>'}`;
  /** The latest complete SVID set from the Workload API. */
  private offered: X509Svid[] | undefined;
  private streamUp = false;
  private streamError: WorkloadApiError | undefined;
  /** Why the latest set cannot be used (verification, missing ID, bad anchors); undefined when usable. */
  private problem: string | undefined;
  /** The Workload API address cannot be used at all. */
  private addressProblem: string | undefined;
  /** The stream delivered a message that could not be decoded. */
  private malformed: string | undefined;
  private validated: ValidatedSvid | undefined;
  private lastValidSerial: string | undefined;
  private rotationCount = 0;
  private anchorsCache: { key: string; result: Anchors } | undefined;
  private publishedDetail: string | undefined;

  private readonly expiryGauge: Gauge;
  private readonly rotations: Counter;

  constructor(options: IdentityComponentOptions) {
    super('identity', options.log.child({ component: 'identity' }), options.now);
    this.options = options;
    this.config = options.config;
    this.expiryGauge = sharedGauge(options.registry, METRIC.svidExpiry, 'When the current X.509 SVID expires (Unix seconds); 0 while the harness holds no valid SVID.');
    this.rotations = sharedCounter(options.registry, METRIC.svidRotations, 'X.509 SVIDs replaced by a new one (different serial) since the harness started.');
    this.expiryGauge.set(0);
  }

  /** The validated SVID in force, if any. */
  current(): ValidatedSvid | undefined {
    return this.validated;
  }

  /** Resolves with the current SVID, or the next one validated. */
  waitForSvid(signal?: AbortSignal): Promise<ValidatedSvid> {
    if (this.validated) return Promise.resolve(this.validated);
    return new Promise((resolve, reject) => {
      const onSvid = (svid: ValidatedSvid): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(svid);
      };
      const onAbort = (): void => {
        this.off('svid', onSvid);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('stopped waiting for an SVID'));
      };
      if (signal?.aborted) return onAbort();
      this.once('svid', onSvid);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  override state(): ComponentState {
    const state = super.state();
    if (!this.validated) return state;
    // Computed on read so /status shows the time left now, not at the last change.
    const expiresInSeconds = Math.max(0, Math.floor((this.validated.notAfter.getTime() - this.now().getTime()) / 1000));
    return { ...state, detail: { ...state.detail, expiresInSeconds } };
  }

  start(): Promise<void> {
    return this.queue.run(async () => {
      if (this.running) return;
      this.running = true;
      // By name: the same on every host, where a gid is whatever groupadd picked there.
      const name = process.getgid ? await groupName(process.getgid()).catch(() => undefined) : undefined;
      if (name) this.groupSelector = `unix:group:${name}`;
      this.setState('Starting', { message: `connecting to the Workload API at ${this.config.identity.workloadApiSocket}`, detail: this.changedDetail() });
      this.openClient();
      this.resync();
    });
  }

  stop(): Promise<void> {
    return this.queue.run(async () => {
      this.running = false;
      this.setState('Stopping', { message: 'closing the Workload API stream' });
      clearTimeout(this.timer);
      this.timer = undefined;
      await this.closeClient();
      this.setState('Stopped', { message: 'stopped', lastError: undefined });
    });
  }

  /**
   * Reload: nothing to check ahead (a wrong address, ID or anchors file is reported, and
   * retried, as this component's own state); the commit reopens the stream only if the
   * socket changed.
   */
  async prepare(config: HarnessConfig): Promise<PreparedUpdate> {
    return { commit: () => this.queue.run(() => this.apply(config)) };
  }

  private async apply(config: HarnessConfig): Promise<void> {
    const before = this.config.identity;
    this.config = config;
    this.anchorsCache = undefined;
    if (this.running && before.workloadApiSocket !== config.identity.workloadApiSocket) {
      await this.closeClient();
      this.offered = undefined;
      this.openClient();
    }
    if (this.running) this.resync();
  }

  private openClient(): void {
    this.streamUp = false;
    this.streamError = undefined;
    this.addressProblem = undefined;
    let client: WorkloadApiClient;
    try {
      client = new WorkloadApiClient({ address: this.config.identity.workloadApiSocket, log: this.log, ...(this.options.backoff ? { backoff: this.options.backoff } : {}) });
    } catch (err) {
      this.addressProblem = `${(err as Error).message} (identity.workloadApiSocket)`;
      return;
    }
    client.on('connected', () => {
      this.streamUp = true;
      this.streamError = undefined;
    });
    client.on('update', (svids: X509Svid[]) => {
      this.offered = svids;
      this.malformed = undefined;
      this.evaluate();
    });
    client.on('error', (err: WorkloadApiError) => this.onClientError(err));
    this.client = client;
    client.start();
  }

  private async closeClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.streamUp = false;
    await client?.close();
  }

  private onClientError(err: WorkloadApiError): void {
    if (err.code === undefined) {
      // A malformed message on a live stream: the set it carried is unusable.
      this.offered = undefined;
      this.malformed = err.message;
      this.evaluate();
      return;
    }
    this.streamUp = false;
    this.streamError = err;
    if (err.code === GrpcStatus.PERMISSION_DENIED) {
      // The agent says this process has no identity (entry missing or deleted): stop claiming one.
      this.offered = undefined;
    }
    this.evaluate();
  }

  /** Re-verifies the latest SVID set and re-derives the state; also the periodic resync. */
  private resync(): void {
    if (!this.running) return;
    this.evaluate();
  }

  private evaluate(): void {
    const id = this.config.identity.spiffeId;
    const anchors = this.loadAnchors();
    let next: ValidatedSvid | undefined;
    if (this.addressProblem) {
      this.problem = this.addressProblem;
    } else if (!id) {
      this.problem = 'identity.spiffeId is not set; set it to the SPIFFE ID this machine must hold';
    } else if (!anchors.ok) {
      this.problem = anchors.error;
    } else if (!this.offered) {
      this.problem = this.malformed;
    } else {
      const svid = this.offered.find((s) => s.spiffeId === id);
      if (!svid) {
        const ids = this.offered.map((s) => s.spiffeId).join(', ') || 'no SVID';
        this.problem = `the Workload API offers ${ids} but not ${id}; fix the SPIRE registration entry (its -spiffeID) or identity.spiffeId`;
      } else {
        const result = verifySvid(svid, { anchors: anchors.anchors, expectedId: id, now: this.now(), anchorsSource: this.config.identity.trustAnchorsFile });
        if (result.ok) {
          this.problem = undefined;
          next = { svid, spiffeId: result.spiffeId, serial: result.serial, notBefore: result.notBefore, notAfter: result.notAfter };
        } else {
          this.problem = result.reason;
        }
      }
    }
    const fresh = next !== undefined && next.serial !== this.validated?.serial;
    this.setValidated(next);
    this.reconcile();
    if (fresh) this.emit('svid', next);
  }

  private setValidated(next: ValidatedSvid | undefined): void {
    if (next && this.lastValidSerial !== undefined && next.serial !== this.lastValidSerial) {
      this.rotationCount += 1;
      this.rotations.inc();
    }
    if (next) this.lastValidSerial = next.serial;
    this.validated = next;
    this.expiryGauge.set(next ? next.notAfter.getTime() / 1000 : 0);
  }

  private reconcile(): void {
    if (!this.running) return;
    const id = this.config.identity.spiffeId;
    const socket = this.config.identity.workloadApiSocket;
    const margin = this.config.identity.expiryMargin;
    const detail = this.changedDetail();
    const svid = this.validated;
    if (this.problem) {
      // An unusable address is Failed: only a reload can change it. Anything else is
      // Degraded: every event and the periodic resync look again, so fixing the entry or
      // the anchors file heals it without a restart.
      this.setState(this.problem === this.addressProblem ? 'Failed' : 'Degraded', { message: this.problem, lastError: this.problem, detail });
    } else if (svid) {
      const until = svid.notAfter.toISOString();
      const remaining = svid.notAfter.getTime() - this.now().getTime();
      if (!this.streamUp) {
        const why = this.streamError?.message ?? 'reconnecting';
        this.setState('Degraded', { message: `Workload API stream lost; SVID ${id} (serial ${svid.serial}) still valid until ${until}; reconnecting`, lastError: why, detail });
      } else if (remaining <= margin) {
        this.setState('Degraded', {
          message: `SVID ${id} expires at ${until}, within identity.expiryMargin (${formatDuration(margin)}); is spire-agent able to renew it?`,
          lastError: undefined,
          detail,
        });
      } else {
        this.setState('Ready', { message: `SVID ${id} valid until ${until}`, lastError: undefined, detail });
      }
    } else {
      const err = this.streamError;
      let message: string;
      if (err?.code === GrpcStatus.PERMISSION_DENIED) {
        message = `no identity issued yet (PermissionDenied): create a registration entry for ${id} with selector ${this.groupSelector} (see docs/identity.md)`;
      } else if (err?.code === GrpcStatus.UNAVAILABLE) {
        message = `waiting for the Workload API socket ${socket}; is spire-agent running?`;
      } else if (err) {
        message = `waiting for an SVID from the Workload API at ${socket}`;
      } else {
        message = `connecting to the Workload API at ${socket}`;
      }
      // Once the Workload API has answered (or failed to), the component knows why it has
      // no SVID and waits for it: Pending. Starting only until that first answer.
      this.setState(err ? 'Pending' : 'Starting', { message, lastError: err?.message, detail });
    }
    this.scheduleResync();
  }

  private scheduleResync(): void {
    clearTimeout(this.timer);
    let delay = RESYNC_MS;
    const svid = this.validated;
    if (svid) {
      const now = this.now().getTime();
      // Wake exactly when the SVID enters the expiry margin and when it expires.
      for (const at of [svid.notAfter.getTime() - this.config.identity.expiryMargin, svid.notAfter.getTime() + 1]) {
        if (at > now) delay = Math.min(delay, at - now);
      }
    }
    this.timer = setTimeout(() => this.resync(), Math.min(delay, MAX_TIMER_MS));
    this.timer.unref();
  }

  /** The detail when it differs from what was last published, so retries do not emit 'change'. */
  private changedDetail(): Record<string, unknown> | undefined {
    const detail = this.detail();
    const json = JSON.stringify(detail);
    if (json === this.publishedDetail) return undefined;
    this.publishedDetail = json;
    return detail;
  }

  private detail(): Record<string, unknown> {
    const svid = this.validated;
    return {
      spiffeId: this.config.identity.spiffeId,
      socket: this.config.identity.workloadApiSocket,
      trustAnchorsFile: this.config.identity.trustAnchorsFile,
      connected: this.streamUp,
      serial: svid?.serial,
      notBefore: svid?.notBefore.toISOString(),
      notAfter: svid?.notAfter.toISOString(),
      rotations: this.rotationCount,
    };
  }

  /** The trust anchors, re-read only when the file changed (checked on every evaluation). */
  private loadAnchors(): Anchors {
    const file = this.config.identity.trustAnchorsFile;
    let key: string;
    try {
      const stat = statSync(file);
      key = `${file}:${stat.ino}:${stat.size}:${stat.mtimeMs}`;
    } catch (err) {
      return { ok: false, error: anchorsFileError(file, err) };
    }
    if (this.anchorsCache?.key === key) return this.anchorsCache.result;
    let result: Anchors;
    try {
      result = { ok: true, anchors: parseTrustAnchors(readFileSync(file, 'utf8'), file) };
    } catch (err) {
      result = { ok: false, error: (err as NodeJS.ErrnoException).code ? anchorsFileError(file, err) : (err as Error).message };
    }
    this.anchorsCache = { key, result };
    return result;
  }
}
