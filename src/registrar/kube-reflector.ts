/**
 * One informer cache: list, then watch from the list's resourceVersion, for one resource.
 *
 * Why not client-node's ListWatch: it does relist on 410 Gone, but it never asks for
 * bookmarks (allowWatchBookmarks), so after a quiet period its resourceVersion is old and
 * a reconnect is more likely to hit 410 and a full relist; it stops for good on any other
 * watch error; and it does not say when it relisted. This reflector, like client-go's:
 * - asks for bookmarks, so the resourceVersion it resumes from stays recent;
 * - on 410 (as an HTTP status or as an ERROR event in the stream) relists, and turns the
 *   difference between the old cache and the new list into added/modified/deleted events,
 *   so subscribers converge without knowing a relist happened;
 * - on any other failure retries the watch from the last resourceVersion with the one
 *   backoff (src/util/backoff.ts);
 * - ends each watch after a server-side timeout (jittered) and resumes at once, so a
 *   half-open connection does not go unnoticed forever (client-node also sets TCP
 *   keepalive on the watch socket).
 */
import type { Watch } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Backoff } from '../util/backoff.ts';

export interface KubeObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string };
}

export type ReflectorEventType = 'added' | 'modified' | 'deleted';

export interface ObjectList<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

export interface ReflectorOptions<T extends KubeObject> {
  /** For log lines and errors: "ExternalWorkloads". */
  what: string;
  /** The collection's path, for the watch ("/apis/g/v/namespaces/ns/plural"). */
  path: string;
  labelSelector?: string;
  /** For RBAC limited by resourceNames: list and watch must both name the object (metadata.name=...). */
  fieldSelector?: string;
  list(): Promise<ObjectList<T>>;
  watch: Watch;
  onEvent(type: ReflectorEventType, object: T): void;
  log: Logger;
  retry: { baseMs: number; maxMs: number };
  /** Server-side watch timeout in seconds; each watch uses a random value in [t, 2t). */
  watchTimeoutSeconds: number;
}

interface WatchError extends Error {
  statusCode?: number;
  code?: number | string;
}

function keyOf(object: KubeObject): string {
  return `${object.metadata.namespace ?? ''}/${object.metadata.name}`;
}

/** Thrown by start() when the first list fails for a reason retrying will not fix (403, 404). */
export class ReflectorStartError extends Error {}

export class Reflector<T extends KubeObject> {
  private readonly objects = new Map<string, T>();
  private resourceVersion = '';
  private stopped = true;
  private abort: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Ends the current backoff sleep early (on stop). */
  private wake: (() => void) | undefined;
  private readonly backoff: Backoff;
  /** Relists after the first, i.e. after a 410 Gone. */
  relists = 0;
  lastError: string | undefined;

  constructor(private readonly options: ReflectorOptions<T>) {
    this.backoff = new Backoff(options.retry);
  }

  get(namespace: string, name: string): T | undefined {
    return this.objects.get(`${namespace}/${name}`);
  }

  list(): T[] {
    return [...this.objects.values()];
  }

  /** Lists (retrying transient failures) and starts watching; resolves once the cache is synced. */
  async start(): Promise<void> {
    this.stopped = false;
    for (;;) {
      try {
        await this.relist();
        break;
      } catch (err) {
        const status = (err as { code?: number }).code;
        if (status === 401 || status === 403 || status === 404) {
          this.stopped = true;
          throw new ReflectorStartError(`cannot list ${this.options.what}: ${describe(err)}`);
        }
        if (this.stopped) return;
        await this.sleep(this.backoff.next(), err);
        if (this.stopped) return;
      }
    }
    this.backoff.reset();
    void this.watch();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    this.abort?.abort();
  }

  private sleep(ms: number, err: unknown): Promise<void> {
    this.lastError = describe(err);
    this.options.log.warn({ err: this.lastError, retryInMs: ms }, `${this.options.what}: list/watch failed; retrying`);
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
    });
  }

  private async relist(): Promise<void> {
    const list = await this.options.list();
    const seen = new Set<string>();
    for (const object of list.items) {
      const key = keyOf(object);
      seen.add(key);
      const old = this.objects.get(key);
      this.objects.set(key, object);
      if (!old) this.options.onEvent('added', object);
      else if (old.metadata.resourceVersion !== object.metadata.resourceVersion) this.options.onEvent('modified', object);
    }
    for (const [key, object] of this.objects) {
      if (seen.has(key)) continue;
      this.objects.delete(key);
      this.options.onEvent('deleted', object);
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.lastError = undefined;
  }

  /** One watch after another until stop(); relists when the resourceVersion is gone. */
  private async watch(): Promise<void> {
    while (!this.stopped) {
      let failure: WatchError | null = null;
      const started = Date.now();
      try {
        if (!this.resourceVersion) {
          await this.relist();
          this.relists += 1;
          this.options.log.info(`${this.options.what}: relisted after 410 Gone`);
        }
        failure = await this.watchOnce();
      } catch (err) {
        failure = err as WatchError;
      }
      if (this.stopped) return;
      if (failure && isGone(failure)) {
        this.resourceVersion = '';
        continue;
      }
      // A watch the server ends at once, again and again, must not become a busy loop.
      if (!failure && Date.now() - started < 1000) failure = new Error('watch ended as soon as it started');
      if (failure) {
        await this.sleep(this.backoff.next(), failure);
      }
    }
  }

  /** Resolves when the watch ends: null for a clean end, else the error. */
  private watchOnce(): Promise<WatchError | null> {
    const { options } = this;
    const timeoutSeconds = options.watchTimeoutSeconds + Math.floor(Math.random() * options.watchTimeoutSeconds);
    const query: Record<string, string | number | boolean> = { resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds };
    if (options.labelSelector) query.labelSelector = options.labelSelector;
    if (options.fieldSelector) query.fieldSelector = options.fieldSelector;
    return new Promise<WatchError | null>((resolve) => {
      let gone: WatchError | null = null;
      const onEvent = (type: string, object: unknown) => {
        if (type === 'ERROR') {
          const status = object as { code?: number; message?: string };
          const err: WatchError = new Error(status.message ?? 'watch error');
          err.code = status.code;
          if (status.code === 410) gone = err;
          else this.options.log.warn({ err: err.message }, `${options.what}: watch error event`);
          return;
        }
        const item = object as T;
        const rv = item.metadata?.resourceVersion;
        if (type === 'BOOKMARK') {
          if (rv) this.resourceVersion = rv;
          return;
        }
        const key = keyOf(item);
        if (type === 'DELETED') {
          this.objects.delete(key);
          options.onEvent('deleted', item);
        } else if (type === 'ADDED' || type === 'MODIFIED') {
          const known = this.objects.has(key);
          this.objects.set(key, item);
          options.onEvent(known ? 'modified' : 'added', item);
        }
        if (rv) this.resourceVersion = rv;
        this.backoff.reset();
      };
      options.watch
        .watch(options.path, query, onEvent, (err: WatchError | null) => resolve(gone ?? err ?? null))
        .then((controller) => {
          this.abort = controller;
          if (this.stopped) controller.abort();
        })
        .catch((err: WatchError) => resolve(err));
    });
  }
}

function isGone(err: WatchError): boolean {
  return err.statusCode === 410 || err.code === 410;
}

function describe(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  if (typeof e.code === 'number' && e.body !== undefined) {
    const body = typeof e.body === 'string' ? safeJson(e.body) : e.body;
    const message = (body as { message?: string } | undefined)?.message;
    return `HTTP ${e.code}${message ? `: ${message}` : ''}`;
  }
  return e.message ?? String(err);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}
