/**
 * The registrar's gRPC service: one bidirectional stream per harness over mutual TLS.
 *
 * Authentication happens in TLS: the client certificate must chain to the trust anchors
 * (another CA, hence another trust domain's SVID, fails the handshake) and carry exactly
 * one spiffe:// URI SAN in our trust domain. Authorisation is the ExternalGroup's
 * allowedIdentities. The serving certificate and the anchors are files, re-read when
 * they change (cert-manager or SPIRE rotation) without dropping streams.
 *
 * An authenticated machine may register itself and nothing more: the name, server name and
 * IPs of its workload are decided here from what it proved (admission.ts), every hello field
 * is bounded (message-limits.ts), and what one connection or identity may hold open is
 * capped (limits), so one VM cannot fill the cluster or the registrar's memory.
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
import { decideIps, decideName, decideServerName, peerAddress, type Peer } from './admission.ts';
import type { ProxyFacts } from './cluster-facts.ts';
import type { RegistrarLimits } from './config.ts';
import type { Session, WorkloadController } from './controller.ts';
import { identityAllowed, resolvedProbes, type Registration } from './desired.ts';
import { boundedState, HELLO_LIMITS, helloProblems, stateProblem } from './message-limits.ts';
import type { ExternalGroup, RegistrarStore } from './store.ts';

export interface RegistrationServerOptions {
  listen: string;
  certFile: string;
  keyFile: string;
  caFile: string;
  trustDomain: string;
  replica: string;
  heartbeatIntervalMs: number;
  limits: Pick<RegistrarLimits, 'streamsPerConnection' | 'pendingStreamsPerIdentity' | 'maxMessageBytes'>;
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
/** A connection without a stream this long is closed (a harness always has one open). */
const IDLE_CONNECTION_MS = 60_000;

export class RegistrationServer {
  private readonly server: grpc.Server;
  private provider?: grpc.experimental.FileWatcherCertificateProvider;
  private boundPort = 0;
  /** Every open stream, with its session once the hello was accepted. */
  private readonly streams = new Map<ServerConnectStream, OpenStream>();
  /** One sweep for all streams finds the silent ones (a timer per stream costs memory and wake-ups at 10k streams). */
  private watchdog?: NodeJS.Timeout;
  /** Streams per SPIFFE ID that have not been answered yet (limits.pendingStreamsPerIdentity). */
  private readonly pending = new Map<string, number>();
  private readonly refusals: Counter<'reason'>;
  private readonly accepted: Counter;
  private draining = false;

  constructor(private readonly options: RegistrationServerOptions) {
    this.server = new grpc.Server({
      // Keepalive from the server side finds half-open connections (a VM that vanished) even between heartbeats.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.max_concurrent_streams': options.limits.streamsPerConnection,
      'grpc.max_receive_message_length': options.limits.maxMessageBytes,
      'grpc.max_connection_idle_ms': IDLE_CONNECTION_MS,
    });
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
    this.watchdog = setInterval(() => this.dropSilent(), Math.max(500, this.options.heartbeatIntervalMs));
    this.watchdog.unref();
    return this.boundPort;
  }

  /** Ends every stream that said nothing for MISSED_HEARTBEATS heartbeat intervals. */
  private dropSilent(): void {
    const silence = MISSED_HEARTBEATS * this.options.heartbeatIntervalMs;
    const now = Date.now();
    for (const [call, open] of this.streams) {
      if (!open.session || now - open.session.lastSeen <= silence) continue;
      this.options.log.info({ workload: open.session.registration.name, peer: open.session.peer }, `no message for ${silence / 1000}s; treating the stream as dropped`);
      open.finish();
      call.destroy(new Error('heartbeat timeout'));
    }
  }

  /** GOAWAY to every connection, then wait up to graceMs for the streams to end. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    clearInterval(this.watchdog);
    const host = this.options.listen.slice(0, this.options.listen.lastIndexOf(':'));
    this.server.drain(`${host}:${this.boundPort}`, graceMs);
    for (const stream of this.streams.keys()) stream.end();
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
    clearInterval(this.watchdog);
    this.server.forceShutdown();
  }

  /** The group's settings as the harness receives them (accepted and update messages). */
  settings(group: ExternalGroup): GroupSettings {
    const facts = this.options.facts();
    return {
      probes_json: JSON.stringify(resolvedProbes(group)),
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
    const proven = peerIdentity(call);
    if (!proven.ok) {
      this.refuse(call, 'NotAuthenticated', proven.message, 60, { peer });
      return;
    }
    const trustDomain = new URL(proven.id).host;
    if (trustDomain !== this.options.trustDomain) {
      this.refuse(call, 'NotAuthenticated', `SPIFFE ID ${proven.id} is not in trust domain ${this.options.trustDomain}`, 60, { peer });
      return;
    }
    const waiting = this.pending.get(proven.id) ?? 0;
    if (waiting >= this.options.limits.pendingStreamsPerIdentity) {
      this.refuse(call, 'TooManyStreams', `${proven.id} already has ${waiting} streams waiting for an answer on this replica (limits.pendingStreamsPerIdentity); one harness needs one stream`, 5, { peer, identity: proven.id });
      return;
    }
    this.pending.set(proven.id, waiting + 1);
    let answered = false;
    /** The stream got its answer (accepted or refused) or ended: it no longer counts as waiting. */
    const answer = (): void => {
      if (answered) return;
      answered = true;
      const left = (this.pending.get(proven.id) ?? 1) - 1;
      if (left > 0) this.pending.set(proven.id, left);
      else this.pending.delete(proven.id);
    };
    const machine: Peer = { spiffeId: proven.id, dnsNames: proven.dnsNames, address: peerAddress(peer) };
    let session: LiveSession | undefined;
    let helloTimer: NodeJS.Timeout | undefined = setTimeout(() => {
      this.refuse(call, 'InvalidHello', 'no hello within the timeout', 5, { peer, identity: proven.id });
      finish();
    }, this.options.helloTimeoutMs ?? 10_000);
    let finished = false;
    const finish = (goodbye = false): void => {
      if (finished) return;
      finished = true;
      answer();
      clearTimeout(helloTimer);
      this.streams.delete(call);
      if (session) {
        if (goodbye) this.options.controller.goodbye(session);
        else this.options.controller.detach(session);
      }
    };
    const open: OpenStream = { finish };
    this.streams.set(call, open);

    call.on('data', (message: HarnessMessage) => {
      if (session) session.lastSeen = Date.now();
      if ('hello' in message && message.hello) {
        if (session) return;
        clearTimeout(helloTimer);
        helloTimer = undefined;
        session = this.hello(call, message.hello, machine, peer);
        open.session = session;
        answer();
        if (!session) finish();
      } else if (!session) {
        this.refuse(call, 'InvalidHello', 'the first message must be hello', 5, { peer, identity: proven.id });
        finish();
      } else if ('state_change' in message && message.state_change) {
        const problem = stateProblem(message.state_change.state);
        if (problem) {
          this.refuse(call, 'InvalidMessage', `${problem}; this harness sends more than any ExternalGroup has probes`, 60, { peer, identity: proven.id, workload: session.registration.name });
          finish();
          return;
        }
        this.options.controller.setState(session, boundedState(message.state_change.state));
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

  private hello(call: ServerConnectStream, hello: Hello, machine: Peer, peer: string): LiveSession | undefined {
    const spiffeId = machine.spiffeId;
    const fields = { peer, identity: spiffeId, group: hello.group.slice(0, 63), namespace: hello.namespace.slice(0, 63), node: hello.node_name.slice(0, 253) };
    if (hello.protocol_version < MIN_PROTOCOL_VERSION) {
      this.refuse(call, 'UnsupportedProtocolVersion', `protocol version ${hello.protocol_version} is no longer served; upgrade mesh-harness`, 3600, fields);
      return undefined;
    }
    const problems = helloProblems(hello);
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
    const name = decideName(hello, group, spiffeId, (other) => this.options.store.getGroup(hello.namespace, other) !== undefined);
    const serverName = name.ok ? decideServerName(hello, group, machine) : name;
    const ips = serverName.ok ? decideIps(hello, group, machine) : serverName;
    if (!name.ok || !serverName.ok || !ips.ok) {
      const denial = !name.ok ? name : !serverName.ok ? serverName : (ips as Exclude<typeof ips, { ok: true }>);
      this.refuse(call, denial.reason, denial.message, 30, fields);
      return undefined;
    }
    const registration: Registration = {
      namespace: hello.namespace,
      group: hello.group,
      name: name.value,
      spiffeId,
      nodeName: hello.node_name,
      machineId: hello.machine_id,
      serverName: serverName.value,
      workloadIps: ips.value,
      proxyInboundPort: hello.proxy_inbound_port,
    };
    const claim = this.options.controller.claim(registration, group);
    if (!claim.ok) {
      this.refuse(call, claim.reason, claim.message, 30, { ...fields, workload: registration.name });
      return undefined;
    }
    const send = (message: RegistrarMessage) => {
      if (!call.writableEnded && !call.destroyed) call.write(message);
    };
    const session = {
      registration,
      state: boundedState(hello.state),
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

/** A session on this server: when the harness last said anything. */
type LiveSession = Session & { lastSeen: number };

interface OpenStream {
  session?: LiveSession;
  /** Ends the stream's part in the controller (a detach; a goodbye with true). */
  finish(goodbye?: boolean): void;
}

/** The peer certificate's single spiffe:// URI SAN, and its DNS SANs. */
function peerIdentity(call: ServerConnectStream): { ok: true; id: string; dnsNames: string[] } | { ok: false; message: string } {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  if (!cert || !cert.subjectaltname) return { ok: false, message: 'the client certificate has no subject alternative name; present an X.509 SVID' };
  const sans = cert.subjectaltname.split(', ');
  const uris = sans.filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
  if (uris.length !== 1 || !uris[0]!.startsWith('spiffe://')) {
    return { ok: false, message: `the client certificate must carry exactly one spiffe:// URI SAN, it has ${JSON.stringify(uris)}` };
  }
  if (uris[0]!.length > HELLO_LIMITS.spiffeId) {
    return { ok: false, message: `the SPIFFE ID is ${uris[0]!.length} characters long; an ExternalWorkload's spec.meshTLS.identity holds at most ${HELLO_LIMITS.spiffeId}` };
  }
  return { ok: true, id: uris[0]!, dnsNames: sans.filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)) };
}
