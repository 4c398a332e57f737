/**
 * SPIFFE Workload API client: holds the FetchX509SVID stream open on the SPIRE agent's Unix
 * socket and reports every message (each is the complete current set of SVIDs). Any
 * failure is retried with the harness backoff; a socket that appears again (agent restart)
 * is noticed through a file watch and retried at once instead of at the next backoff step.
 */
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../log/logger.ts';
import { Backoff } from '../util/backoff.ts';
import { parseWorkloadApiAddress } from './workload-api-address.ts';

export { parseWorkloadApiAddress };
import { SECURITY_HEADER, workloadApiService, type RawX509Svid, type RawX509SvidResponse } from './proto.ts';

export interface X509Svid {
  spiffeId: string;
  /** Leaf first, then intermediates. */
  chain: X509Certificate[];
  /** PKCS#8 PEM. */
  keyPem: string;
  /** The trust domain bundle from the message. */
  bundle: X509Certificate[];
  hint: string;
}

/** `errno` names the socket error (ENOENT, ECONNREFUSED, EACCES) when the status carried one. */
export type WorkloadApiError = Error & { code?: number; errno?: string };

export interface WorkloadApiClientOptions {
  /** unix:///path, unix:/path, or an absolute path. */
  address: string;
  log: Logger;
  backoff?: { baseMs: number; maxMs: number };
  /** Watch the socket path so a re-created socket is retried at once. Default true. */
  watchSocket?: boolean;
}

export const DEFAULT_WORKLOAD_API_BACKOFF = { baseMs: 200, maxMs: 10_000 };

/** Splits concatenated DER structures (the Workload API's chain and bundle encoding). */
export function splitDer(buffer: Buffer, what: string): Buffer[] {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset < buffer.length) {
    if (buffer[offset] !== 0x30) throw new Error(`${what}: byte ${offset} does not start a DER SEQUENCE`);
    const first = buffer[offset + 1];
    if (first === undefined) throw new Error(`${what}: truncated DER header at byte ${offset}`);
    let length = first;
    let header = 2;
    if (first & 0x80) {
      const count = first & 0x7f;
      if (count === 0 || count > 4 || offset + 2 + count > buffer.length) throw new Error(`${what}: bad DER length at byte ${offset}`);
      length = buffer.readUIntBE(offset + 2, count);
      header += count;
    }
    const end = offset + header + length;
    if (end > buffer.length) throw new Error(`${what}: DER structure at byte ${offset} runs past the end`);
    parts.push(buffer.subarray(offset, end));
    offset = end;
  }
  return parts;
}

function parseCertificates(der: unknown, what: string): X509Certificate[] {
  if (!Buffer.isBuffer(der)) throw new Error(`${what} is missing`);
  return splitDer(der, what).map((part, i) => {
    try {
      return new X509Certificate(part);
    } catch (err) {
      throw new Error(`${what}: certificate ${i + 1} cannot be parsed: ${(err as Error).message}`);
    }
  });
}

function pemWrap(der: Buffer, label: string): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Validates and decodes one X509SVID message entry. */
export function decodeX509Svid(raw: RawX509Svid): X509Svid {
  if (typeof raw.spiffe_id !== 'string' || raw.spiffe_id === '') throw new Error('X509SVID without spiffe_id');
  const chain = parseCertificates(raw.x509_svid, `x509_svid of ${raw.spiffe_id}`);
  if (chain.length === 0) throw new Error(`x509_svid of ${raw.spiffe_id} holds no certificate`);
  if (!Buffer.isBuffer(raw.x509_svid_key)) throw new Error(`x509_svid_key of ${raw.spiffe_id} is missing`);
  if (splitDer(raw.x509_svid_key, `x509_svid_key of ${raw.spiffe_id}`).length !== 1) throw new Error(`x509_svid_key of ${raw.spiffe_id} is not one DER structure`);
  // Wrapped, not parsed: parsing an EC key costs most of a rotation, and verifySvid parses it anyway to match it to the leaf.
  const keyPem = pemWrap(raw.x509_svid_key, 'PRIVATE KEY');
  return { spiffeId: raw.spiffe_id, chain, keyPem, bundle: parseCertificates(raw.bundle, `bundle of ${raw.spiffe_id}`), hint: typeof raw.hint === 'string' ? raw.hint : '' };
}

/** An error written for the operator from a gRPC status on the Workload API socket. */
export function describeWorkloadApiStatus(status: { code: number; details: string }, socketPath: string): WorkloadApiError {
  const details = status.details || grpc.status[status.code] || String(status.code);
  let message: string;
  if (status.code === grpc.status.UNAVAILABLE && details.includes('ENOENT')) {
    message = `Workload API socket ${socketPath} does not exist; is spire-agent running? (identity.workloadApiSocket)`;
  } else if (status.code === grpc.status.UNAVAILABLE && details.includes('ECONNREFUSED')) {
    message = `nothing serves the Workload API socket ${socketPath} (connection refused); is spire-agent running?`;
  } else if (status.code === grpc.status.UNAVAILABLE && details.includes('EACCES')) {
    message = `permission denied opening the Workload API socket ${socketPath}; the harness must be allowed to connect to it`;
  } else if (status.code === grpc.status.PERMISSION_DENIED) {
    message = `no identity issued (PermissionDenied: ${details}): no SPIRE registration entry matches this process yet`;
  } else if (status.code === grpc.status.OK) {
    message = `the Workload API server at ${socketPath} ended the stream`;
  } else {
    message = `Workload API at ${socketPath}: ${grpc.status[status.code] ?? status.code}: ${details}`;
  }
  const errno = /\b(ENOENT|ECONNREFUSED|EACCES)\b/.exec(details)?.[1];
  return Object.assign(new Error(message), { code: status.code, ...(errno ? { errno } : {}) });
}

export class WorkloadApiClient extends EventEmitter {
  readonly socketPath: string;
  private readonly target: string;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private readonly watchSocket: boolean;
  private grpcClient: grpc.Client | undefined;
  private call: grpc.ClientReadableStream<RawX509SvidResponse> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private running = false;
  /** Whether the current stream has delivered a message (the server answers). */
  private streaming = false;
  /** The last logged condition, so a retry loop logs each change once. */
  private lastCondition: string | undefined;

  constructor(options: WorkloadApiClientOptions) {
    super();
    this.socketPath = parseWorkloadApiAddress(options.address);
    this.target = `unix://${this.socketPath}`;
    this.log = options.log;
    this.backoff = new Backoff(options.backoff ?? DEFAULT_WORKLOAD_API_BACKOFF);
    this.watchSocket = options.watchSocket ?? true;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  async close(): Promise<void> {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.dropCall();
    const watcher = this.watcher;
    this.watcher = undefined;
    const closing = watcher?.close();
    // close() drops every listener while a stat may still be in flight; an 'error' then
    // emitted with no listener would crash the process.
    watcher?.on('error', () => undefined);
    await closing;
  }

  private connect(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.dropCall();
    this.ensureWatcher();
    const Client = workloadApiService();
    const client = new Client(this.target, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set(SECURITY_HEADER, 'true');
    const call = (client as unknown as { FetchX509SVID(req: object, md: grpc.Metadata): grpc.ClientReadableStream<RawX509SvidResponse> }).FetchX509SVID({}, metadata);
    this.grpcClient = client;
    this.call = call;
    this.log.debug({ socket: this.socketPath }, 'opening FetchX509SVID stream');
    call.on('data', (message: RawX509SvidResponse) => {
      if (this.call !== call) return;
      if (!this.streaming) {
        this.streaming = true;
        this.backoff.reset();
        this.noteCondition('connected', 'info', `Workload API stream open on ${this.socketPath}`);
        this.emit('connected');
      }
      this.onMessage(message);
    });
    // Failures are handled once, from 'status', which grpc-js emits after 'error' for every ending.
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) => {
      if (this.call !== call || !this.running) return;
      this.onStreamEnd(describeWorkloadApiStatus(status, this.socketPath));
    });
  }

  private onMessage(message: RawX509SvidResponse): void {
    let svids: X509Svid[];
    try {
      if (!message || !Array.isArray(message.svids)) throw new Error('X509SVIDResponse without svids');
      svids = message.svids.map(decodeX509Svid);
    } catch (err) {
      this.report(new Error(`the Workload API sent an unusable X509SVIDResponse: ${(err as Error).message}`));
      return;
    }
    this.emit('update', svids);
  }

  private onStreamEnd(err: WorkloadApiError): void {
    this.dropCall();
    this.report(err);
    const delay = this.backoff.next();
    this.log.debug({ delayMs: delay, attempt: this.backoff.attempts }, 'retrying the Workload API');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private report(err: WorkloadApiError): void {
    this.noteCondition(`${err.code ?? 'x'}:${err.message}`, err.code === grpc.status.PERMISSION_DENIED ? 'info' : 'warn', err.message);
    // EventEmitter throws on an unheard 'error'; the client recovers by itself, so nobody is obliged to listen.
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private noteCondition(key: string, level: 'info' | 'warn', message: string): void {
    if (this.lastCondition === key) return;
    this.lastCondition = key;
    this.log[level]({ socket: this.socketPath }, message);
  }

  private dropCall(): void {
    const call = this.call;
    const client = this.grpcClient;
    this.call = undefined;
    this.grpcClient = undefined;
    this.streaming = false;
    call?.cancel();
    client?.close();
  }

  /**
   * chokidar only sees files appear in a directory that exists when the watch starts, so
   * the watch is set up on the first attempt that finds the socket's directory.
   */
  private ensureWatcher(): void {
    if (!this.watchSocket || this.watcher || !existsSync(dirname(this.socketPath))) return;
    // A socket this process may not open is reported by the connect; the watcher stays quiet about it.
    const watcher = watch(this.socketPath, { ignoreInitial: true, ignorePermissionErrors: true });
    watcher.on('all', (event) => {
      if (event === 'add' || event === 'change') this.onSocketCreated();
    });
    watcher.on('error', (err) => this.log.debug({ err }, 'watching the Workload API socket failed'));
    this.watcher = watcher;
  }

  private onSocketCreated(): void {
    if (!this.running || this.streaming) return;
    this.log.debug({ socket: this.socketPath }, 'Workload API socket created; connecting now');
    this.backoff.reset();
    this.connect();
  }
}

/**
 * Whether something serves the Workload API on `socketPath`. The call deliberately omits
 * the security header: a SPIRE agent answers InvalidArgument at once without attesting the
 * caller, so polling this costs the agent nothing. Any gRPC answer means it serves.
 */
export function workloadApiServes(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const Client = workloadApiService();
    const client = new Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
    const call = (client as unknown as { FetchX509SVID(req: object, options: grpc.CallOptions): grpc.ClientReadableStream<unknown> }).FetchX509SVID(
      {},
      { deadline: Date.now() + timeoutMs },
    );
    let settled = false;
    const settle = (serves: boolean): void => {
      if (settled) return;
      settled = true;
      call.cancel();
      client.close();
      resolve(serves);
    };
    call.on('data', () => settle(true));
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) => settle(status.code !== grpc.status.UNAVAILABLE && status.code !== grpc.status.DEADLINE_EXCEEDED));
  });
}

/**
 * One FetchX509SVID answer: the first message of the stream, decoded, then the stream is
 * cancelled. For one-shot callers (`mesh-harness check`); the daemon keeps the stream open
 * with WorkloadApiClient. Rejects with the same operator-facing errors as the client.
 */
export function fetchX509SvidsOnce(socketPath: string, timeoutMs: number): Promise<X509Svid[]> {
  return new Promise((resolve, reject) => {
    const Client = workloadApiService();
    const client = new Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set(SECURITY_HEADER, 'true');
    const call = (client as unknown as { FetchX509SVID(req: object, md: grpc.Metadata, options: grpc.CallOptions): grpc.ClientReadableStream<RawX509SvidResponse> }).FetchX509SVID(
      {},
      metadata,
      { deadline: Date.now() + timeoutMs },
    );
    let settled = false;
    const settle = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      call.cancel();
      client.close();
      outcome();
    };
    call.on('data', (message: RawX509SvidResponse) =>
      settle(() => {
        try {
          if (!message || !Array.isArray(message.svids)) throw new Error('X509SVIDResponse without svids');
          resolve(message.svids.map(decodeX509Svid));
        } catch (err) {
          reject(new Error(`the Workload API at ${socketPath} sent an unusable X509SVIDResponse: ${(err as Error).message}`));
        }
      }),
    );
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) =>
      settle(() => {
        if (status.code === grpc.status.DEADLINE_EXCEEDED) {
          reject(Object.assign(new Error(`the Workload API at ${socketPath} sent no SVID within ${timeoutMs} ms; is spire-agent healthy (spire-agent healthcheck)?`), { code: status.code }));
        } else {
          reject(describeWorkloadApiStatus(status, socketPath));
        }
      }),
    );
  });
}
