/**
 * A development SPIFFE Workload API server for the playground and the tests: serves real
 * X.509-SVIDs from a DevCa on a Unix socket and rotates them on a short TTL, pushing each
 * new set to every open FetchX509SVID stream like the SPIRE agent does. It gives every
 * caller every configured identity (no workload attestation) and answers PermissionDenied
 * while it has none, so clients see the same sequence as against a real agent.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../log/logger.ts';
import { SECURITY_HEADER, workloadApiService, type RawX509BundlesResponse, type RawX509SvidResponse } from '../../identity/proto.ts';
import type { DevCa, IssuedSvid } from '../ca.ts';

export interface DevWorkloadApiServerOptions {
  socketPath: string;
  ca: DevCa;
  identities: Array<{ spiffeId: string }>;
  ttlMs: number;
  /** Default: half the TTL, when SPIRE agents rotate too. */
  rotateEveryMs?: number;
  log: Logger;
}

type SvidStream = grpc.ServerWritableStream<object, RawX509SvidResponse>;
type BundleStream = grpc.ServerWritableStream<object, RawX509BundlesResponse>;

export class DevWorkloadApiServer {
  private server: grpc.Server | undefined;
  private readonly svidStreams = new Set<SvidStream>();
  private readonly bundleStreams = new Set<BundleStream>();
  private identities: Array<{ spiffeId: string }>;
  private issued: IssuedSvid[] = [];
  private rotationTimer: NodeJS.Timeout | undefined;
  private rotating: Promise<void> | undefined;
  private rotationCount = 0;
  private readonly log: Logger;

  constructor(private readonly options: DevWorkloadApiServerOptions) {
    if (options.ttlMs <= 0) throw new RangeError(`ttlMs must be positive, got ${options.ttlMs}`);
    this.identities = [...options.identities];
    this.log = options.log;
  }

  /** How many times SVIDs were re-issued after the first set. */
  get rotations(): number {
    return this.rotationCount;
  }

  /** The SVIDs currently served. */
  current(): readonly IssuedSvid[] {
    return this.issued;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const { socketPath } = this.options;
    mkdirSync(dirname(socketPath), { recursive: true });
    // A socket left by a killed predecessor would make bind fail with EADDRINUSE.
    rmSync(socketPath, { force: true });
    await this.issue();
    const server = new grpc.Server();
    server.addService(workloadApiService().service, {
      FetchX509SVID: (call: SvidStream) => this.fetchX509Svid(call),
      FetchX509Bundles: (call: BundleStream) => this.fetchX509Bundles(call),
    });
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
    // Every local process may ask, as with a SPIRE agent; identity is decided per caller there.
    chmodSync(socketPath, 0o777);
    this.server = server;
    this.scheduleRotation();
    this.log.info({ socket: socketPath, identities: this.identities.map((i) => i.spiffeId) }, 'development Workload API serving');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    clearTimeout(this.rotationTimer);
    this.rotationTimer = undefined;
    await this.rotating;
    for (const call of [...this.svidStreams, ...this.bundleStreams]) call.end();
    this.svidStreams.clear();
    this.bundleStreams.clear();
    if (server) server.forceShutdown();
    rmSync(this.options.socketPath, { force: true });
  }

  /** Replaces the served identities and pushes the new set; none means PermissionDenied. */
  async setIdentities(identities: Array<{ spiffeId: string }>): Promise<void> {
    this.identities = [...identities];
    await this.rotate();
  }

  /** Issues new SVIDs now and pushes them to every open stream. */
  async rotate(): Promise<void> {
    clearTimeout(this.rotationTimer);
    this.rotationTimer = undefined;
    // Rotations run one after another so streams never see an older set after a newer one.
    const run = (this.rotating ?? Promise.resolve()).then(async () => {
      await this.issue();
      this.rotationCount += 1;
      this.push();
    });
    const settled = run.catch(() => undefined);
    this.rotating = settled;
    try {
      await run;
    } finally {
      if (this.rotating === settled) this.rotating = undefined;
      if (this.server && !this.rotationTimer) this.scheduleRotation();
    }
  }

  private scheduleRotation(): void {
    const every = this.options.rotateEveryMs ?? Math.max(1, Math.floor(this.options.ttlMs / 2));
    this.rotationTimer = setTimeout(() => {
      this.rotate().catch((err: unknown) => this.log.error({ err }, 'development Workload API: issuing SVIDs failed'));
    }, every);
  }

  private async issue(): Promise<void> {
    this.issued = await Promise.all(this.identities.map(({ spiffeId }) => this.options.ca.issueSvid({ spiffeId, ttlMs: this.options.ttlMs })));
  }

  private hasSecurityHeader(call: grpc.ServerWritableStream<object, unknown>): boolean {
    return call.metadata.get(SECURITY_HEADER)[0] === 'true';
  }

  private refuse(call: grpc.ServerWritableStream<object, unknown>, code: grpc.status, details: string): void {
    call.emit('error', { code, details });
  }

  private fetchX509Svid(call: SvidStream): void {
    if (!this.hasSecurityHeader(call)) return this.refuse(call, grpc.status.INVALID_ARGUMENT, `missing gRPC metadata "${SECURITY_HEADER}: true"`);
    if (this.issued.length === 0) return this.refuse(call, grpc.status.PERMISSION_DENIED, 'no identity issued');
    this.svidStreams.add(call);
    call.on('cancelled', () => this.svidStreams.delete(call));
    call.on('close', () => this.svidStreams.delete(call));
    call.write(this.svidResponse());
  }

  private fetchX509Bundles(call: BundleStream): void {
    if (!this.hasSecurityHeader(call)) return this.refuse(call, grpc.status.INVALID_ARGUMENT, `missing gRPC metadata "${SECURITY_HEADER}: true"`);
    this.bundleStreams.add(call);
    call.on('cancelled', () => this.bundleStreams.delete(call));
    call.on('close', () => this.bundleStreams.delete(call));
    call.write(this.bundlesResponse());
  }

  private svidResponse(): RawX509SvidResponse {
    const bundle = this.options.ca.bundleDer();
    return {
      svids: this.issued.map((svid) => ({ spiffe_id: svid.spiffeId, x509_svid: Buffer.concat(svid.chainDer), x509_svid_key: svid.keyDer, bundle, hint: '' })),
      crl: [],
      federated_bundles: {},
    };
  }

  private bundlesResponse(): RawX509BundlesResponse {
    return { crl: [], bundles: { [`spiffe://${this.options.ca.trustDomain}`]: this.options.ca.bundleDer() } };
  }

  private push(): void {
    if (this.issued.length === 0) {
      // Like a SPIRE agent whose last entry was deleted: the stream ends with PermissionDenied.
      for (const call of this.svidStreams) this.refuse(call, grpc.status.PERMISSION_DENIED, 'no identity issued');
      this.svidStreams.clear();
    } else {
      const response = this.svidResponse();
      for (const call of this.svidStreams) call.write(response);
    }
    const bundles = this.bundlesResponse();
    for (const call of this.bundleStreams) call.write(bundles);
  }
}
