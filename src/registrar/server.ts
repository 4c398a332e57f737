/**
 * The registrar's gRPC service: one bidirectional stream per harness over mutual TLS.
 *
 * Authentication happens in TLS: the client certificate must chain to the trust anchors
 * (another CA, hence another trust domain's SVID, fails the handshake) and carry exactly
 * one spiffe:// URI SAN in our trust domain. Authorisation is the ExternalGroup's
 * allowedIdentities. The serving certificate and the anchors are files, re-read when
 * they change (cert-manager or SPIRE rotation) without dropping streams.
 */
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { Counter, Gauge } from 'prom-client';
import type { Logger } from '../log/logger.ts';
import {
  PROTOCOL_VERSION,
  registrationService,
  type GroupSettings,
  type HarnessMessage,
  type Hello,
  type RegistrarMessage,
  type ServerConnectStream,
  type WorkloadState,
} from '../protocol/registration.ts';
import { isDnsLabel, workloadName } from '../protocol/workload-name.ts';
import type { ProxyFacts } from './cluster-facts.ts';
import type { Session, WorkloadController } from './controller.ts';
import { identityAllowed, type Registration } from './desired.ts';
import type { ExternalGroup, RegistrarStore } from './store.ts';

export interface RegistrationServerOptions {
  listen: string;
  certFile: string;
  keyFile: string;
  caFile: string;
  trustDomain: string;
  replica: string;
  heartbeatIntervalMs: number;
  /** The cluster facts as they are now (linkerd-config, or the registrar config's fallback). */
  facts(): ProxyFacts;
  store: RegistrarStore;
  controller: WorkloadController;
  log: Logger;
  registry: Registry;
  /** How often the certificate files are re-read. */
  certRefreshMs?: number;
  /** How long a new stream may take to say hello. */
  helloTimeoutMs?: number;
}

/** Versions older than this are refused (none yet: version 0 is a harness from before versioning, served as 1). */
const MIN_PROTOCOL_VERSION = 0;
/** A stream silent for this many heartbeat intervals is treated as dropped. */
const MISSED_HEARTBEATS = 3;

export class RegistrationServer {
  private readonly server = new grpc.Server({
    // Keepalive from the server side finds half-open connections (a VM that vanished) even between heartbeats.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
  });
  private provider?: grpc.experimental.FileWatcherCertificateProvider;
  private boundPort = 0;
  private readonly streams = new Set<ServerConnectStream>();
  private readonly refusals: Counter<'reason'>;
  private readonly accepted: Counter;
  private draining = false;

  constructor(private readonly options: RegistrationServerOptions) {
    const registry = options.registry;
    this.refusals = new Counter({ name: 'mesh_registrar_refusals_total', help: 'Harness streams refused, by reason.', labelNames: ['reason'], registers: [registry] });
    this.accepted = new Counter({ name: 'mesh_registrar_accepted_total', help: 'Harness streams accepted.', registers: [registry] });
    const streams = this.streams;
    new Gauge({ name: 'mesh_registrar_streams', help: 'Open harness streams on this replica.', registers: [registry], collect(this: Gauge) { this.set(streams.size); } });
  }

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<number> {
    this.provider = new grpc.experimental.FileWatcherCertificateProvider({
      certificateFile: this.options.certFile,
      privateKeyFile: this.options.keyFile,
      caCertificateFile: this.options.caFile,
      refreshIntervalMs: this.options.certRefreshMs ?? 10_000,
    });
    const credentials = grpc.experimental.createCertificateProviderServerCredentials(this.provider, this.provider, true);
    this.server.addService(registrationService().service, { Connect: (call: ServerConnectStream) => this.connect(call) });
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(this.options.listen, credentials, (err, port) => (err ? reject(new Error(`cannot listen on ${this.options.listen}: ${err.message}`)) : resolve(port))),
    );
    return this.boundPort;
  }

  /** GOAWAY to every connection, then wait up to graceMs for the streams to end. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    const host = this.options.listen.slice(0, this.options.listen.lastIndexOf(':'));
    this.server.drain(`${host}:${this.boundPort}`, graceMs);
    for (const stream of this.streams) stream.end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  forceShutdown(): void {
    this.server.forceShutdown();
  }

  /** The group's settings as the harness receives them (accepted and update messages). */
  settings(group: ExternalGroup): GroupSettings {
    const facts = this.options.facts();
    return {
      probes_json: JSON.stringify(group.spec.probes ?? []),
      proxy: {
        default_inbound_policy: facts.defaultInboundPolicy,
        cluster_networks: [...facts.clusterNetworks],
        image_name: facts.proxyImage?.name ?? '',
        image_version: facts.proxyImage?.version ?? '',
      },
    };
  }

  private connect(call: ServerConnectStream): void {
    const log = this.options.log;
    const peer = call.getPeer();
    if (this.draining) {
      this.refuse(call, 'Draining', 'this replica is shutting down; connect to another', 1, { peer });
      return;
    }
    const spiffeId = peerSpiffeId(call);
    if (!spiffeId.ok) {
      this.refuse(call, 'NotAuthenticated', spiffeId.message, 60, { peer });
      return;
    }
    const trustDomain = new URL(spiffeId.id).host;
    if (trustDomain !== this.options.trustDomain) {
      this.refuse(call, 'NotAuthenticated', `SPIFFE ID ${spiffeId.id} is not in trust domain ${this.options.trustDomain}`, 60, { peer });
      return;
    }
    this.streams.add(call);
    let session: (Session & { lastSeen: number }) | undefined;
    let helloTimer: NodeJS.Timeout | undefined = setTimeout(() => {
      this.refuse(call, 'InvalidHello', 'no hello within the timeout', 5, { peer, identity: spiffeId.id });
    }, this.options.helloTimeoutMs ?? 10_000);
    const silence = MISSED_HEARTBEATS * this.options.heartbeatIntervalMs;
    const watchdog = setInterval(() => {
      if (session && Date.now() - session.lastSeen > silence) {
        log.info({ workload: session.registration.name, peer }, `no message for ${silence / 1000}s; treating the stream as dropped`);
        finish();
        call.destroy(new Error('heartbeat timeout'));
      }
    }, Math.max(500, this.options.heartbeatIntervalMs));
    watchdog.unref();

    let finished = false;
    const finish = (goodbye = false): void => {
      if (finished) return;
      finished = true;
      clearTimeout(helloTimer);
      clearInterval(watchdog);
      this.streams.delete(call);
      if (session) {
        if (goodbye) this.options.controller.goodbye(session);
        else this.options.controller.detach(session);
      }
    };

    call.on('data', (message: HarnessMessage) => {
      if (session) session.lastSeen = Date.now();
      if ('hello' in message && message.hello) {
        if (session) return;
        clearTimeout(helloTimer);
        helloTimer = undefined;
        session = this.hello(call, message.hello, spiffeId.id, peer);
        if (!session) finish();
      } else if (!session) {
        this.refuse(call, 'InvalidHello', 'the first message must be hello', 5, { peer, identity: spiffeId.id });
        finish();
      } else if ('state_change' in message && message.state_change) {
        this.options.controller.setState(session, normalizeState(message.state_change.state));
      } else if ('goodbye' in message && message.goodbye) {
        log.info({ workload: session.registration.name, reason: message.goodbye.reason }, 'harness said goodbye');
        finish(true);
        call.end();
      }
      // Heartbeats only refresh lastSeen; unknown messages from newer harnesses are ignored.
    });
    call.on('end', () => {
      finish();
      call.end();
    });
    call.on('error', () => finish());
    call.on('cancelled', () => finish());
    call.on('close', () => finish());
  }

  private hello(call: ServerConnectStream, hello: Hello, spiffeId: string, peer: string): (Session & { lastSeen: number }) | undefined {
    const fields = { peer, identity: spiffeId, group: hello.group, namespace: hello.namespace, node: hello.node_name };
    if (hello.protocol_version < MIN_PROTOCOL_VERSION) {
      this.refuse(call, 'UnsupportedProtocolVersion', `protocol version ${hello.protocol_version} is no longer served; upgrade mesh-harness`, 3600, fields);
      return undefined;
    }
    const problems = [
      ...(hello.group ? [] : ['group is empty (set workload.group)']),
      ...(hello.namespace ? [] : ['namespace is empty (set workload.namespace)']),
      ...(hello.node_name ? [] : ['node name is empty (set workload.nodeName)']),
      ...(hello.workload_name && !isDnsLabel(hello.workload_name) ? [`workload name "${hello.workload_name}" is not a DNS-1123 label`] : []),
    ];
    if (problems.length) {
      this.refuse(call, 'InvalidHello', problems.join('; '), 60, fields);
      return undefined;
    }
    const group = this.options.store.getGroup(hello.namespace, hello.group);
    if (!group) {
      this.refuse(call, 'GroupNotFound', `ExternalGroup ${hello.namespace}/${hello.group} does not exist`, 30, fields);
      return undefined;
    }
    if (!identityAllowed(group, spiffeId)) {
      this.refuse(call, 'NotAllowed', `${spiffeId} is not in ExternalGroup ${hello.namespace}/${hello.group} spec.allowedIdentities`, 60, fields);
      return undefined;
    }
    const registration: Registration = {
      namespace: hello.namespace,
      group: hello.group,
      // A harness from before naming was shared sends no name: derive it the same way.
      name: hello.workload_name || workloadName({ namespace: hello.namespace, group: hello.group, nodeName: hello.node_name, spiffeId }),
      spiffeId,
      nodeName: hello.node_name,
      machineId: hello.machine_id,
      serverName: hello.server_name || defaultServerName(spiffeId),
      workloadIps: hello.workload_ips,
    };
    const claim = this.options.controller.claim(registration);
    if (!claim.ok) {
      this.refuse(call, claim.reason, claim.message, 30, { ...fields, workload: registration.name });
      return undefined;
    }
    const send = (message: RegistrarMessage) => {
      if (!call.writableEnded && !call.destroyed) call.write(message);
    };
    const session = {
      registration,
      state: normalizeState(hello.state),
      connectedAt: new Date(),
      peer,
      lastSeen: Date.now(),
      close: (reason: string, message: string) => {
        this.options.log.info({ workload: registration.name, reason }, `closing stream: ${message}`);
        send({ refused: { reason, message, retry_after_seconds: 1 } });
        call.end();
      },
      groupChanged: (next: ExternalGroup) => send({ update: { settings: this.settings(next) } }),
    };
    this.options.controller.attach(session);
    this.accepted.inc();
    send({
      accepted: {
        protocol_version: PROTOCOL_VERSION,
        workload_name: registration.name,
        heartbeat_interval_seconds: Math.max(1, Math.round(this.options.heartbeatIntervalMs / 1000)),
        settings: this.settings(group),
        replica: this.options.replica,
      },
    });
    this.options.log.info({ ...fields, workload: registration.name, harness: hello.versions?.harness }, 'harness registered');
    return session;
  }

  private refuse(call: ServerConnectStream, reason: string, message: string, retryAfterSeconds: number, fields: Record<string, unknown>): void {
    this.refusals.inc({ reason });
    this.options.log.warn({ ...fields, reason }, `refused: ${message}`);
    if (!call.writableEnded && !call.destroyed) {
      call.write({ refused: { reason, message, retry_after_seconds: retryAfterSeconds } });
      call.end();
    }
  }
}

function normalizeState(state: WorkloadState | null | undefined): WorkloadState {
  return { proxy_ready: state?.proxy_ready ?? false, probes: state?.probes ?? [], reason: state?.reason ?? '', message: state?.message ?? '' };
}

/** Without a server name in the hello: the SPIFFE ID's path as a DNS-ish name is not reliable, so use the trust domain's convention. */
function defaultServerName(spiffeId: string): string {
  const url = new URL(spiffeId);
  const parts = url.pathname.split('/').filter(Boolean).reverse();
  return [...parts, url.host].join('.').toLowerCase().replace(/[^a-z0-9.-]/g, '-').slice(0, 253);
}

/** The peer certificate's single spiffe:// URI SAN. */
function peerSpiffeId(call: ServerConnectStream): { ok: true; id: string } | { ok: false; message: string } {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  if (!cert || !cert.subjectaltname) return { ok: false, message: 'the client certificate has no subject alternative name; present an X.509 SVID' };
  const uris = cert.subjectaltname.split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
  if (uris.length !== 1 || !uris[0]!.startsWith('spiffe://')) {
    return { ok: false, message: `the client certificate must carry exactly one spiffe:// URI SAN, it has ${JSON.stringify(uris)}` };
  }
  return { ok: true, id: uris[0]! };
}
