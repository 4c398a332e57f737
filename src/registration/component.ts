/**
 * The harness side of the registrar protocol: one long-lived bidirectional gRPC stream
 * over mutual TLS, where the harness presents its current X.509 SVID and accepts only a
 * registrar whose certificate chains to the trust anchors and carries the configured
 * SPIFFE ID (control.registrarIdentity).
 *
 * Hello, then state changes the moment they happen, heartbeats at the registrar's
 * interval, and a goodbye on stop. A rotated SVID is used for the next connection; the
 * open stream is not dropped for it. Reconnects go through the one backoff (jitter
 * spreads a fleet reconnecting after a registrar restart). A refusal is shown in /status
 * and `mesh-harness status` and retried no sooner than the registrar asked.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { Counter, Gauge } from 'prom-client';
import type { HarnessConfig } from '../config/types.ts';
import { BaseComponent, type PreparedUpdate } from '../component/component.ts';
import type { Logger } from '../log/logger.ts';
import {
  PROTOCOL_VERSION,
  registrationService,
  type Accepted,
  type ConnectStream,
  type GroupSettings,
  type RegistrarMessage,
  type WorkloadState,
} from '../protocol/registration.ts';
import { controlPlaneProxy, type ControlPlaneProxy } from '../protocol/proxy-image.ts';
import { configuredWorkloadName } from '../protocol/workload-name.ts';
import { Backoff } from '../util/backoff.ts';
import { harnessVersion } from '../util/version.ts';
import type { ReadinessSource } from './readiness.ts';

/** What the registration needs of the identity component. */
export interface SvidSource {
  current(): { svid: { chain: Array<{ toString(): string }>; keyPem: string }; spiffeId: string } | undefined;
  waitForSvid(signal?: AbortSignal): Promise<unknown>;
}

/** The group's settings as the registrar last sent them. */
export interface RegistrarSettings {
  probes: Array<Record<string, unknown>>;
  proxy?: { defaultInboundPolicy: string; clusterNetworks: string[] };
  /**
   * The control plane's proxy image, when the registrar knows it (what `mesh-harness proxy
   * install` pulls by default); /status shows the last one sent, kept while disconnected.
   */
  proxyImage?: ControlPlaneProxy;
}

export interface RegistrationComponentOptions {
  config: HarnessConfig;
  log: Logger;
  registry: Registry;
  identity: SvidSource;
  readiness: ReadinessSource;
  trustAnchorsPem: () => Promise<string> | string;
  /** Workload IPs to announce when workload.ips is empty. */
  detectedIps?: () => string[];
  /** Versions reported in the hello. */
  versions?: () => { proxy: string; spireAgent: string };
  /** Identifies this machine to the registrar; default a hash of /etc/machine-id. */
  machineId?: string;
  backoff?: { baseMs: number; maxMs: number };
}

/**
 * The registrar's latest refusal, as /status shows it (`detail.refusal` of the registration
 * component) while it is the current answer; cleared once accepted or when the registrar
 * cannot be reached at all. `mesh-harness check` picks its hint by `reason`.
 */
export interface Refusal {
  /**
   * The registrar's reason code: NotAllowed, GroupNotFound, NameTaken, NameMismatch,
   * TooManyWorkloads, IPNotAllowed, ServerNameMismatch, NoServerName, InvalidHello,
   * InvalidMessage, TooManyStreams, NotAuthenticated, Draining, Replaced, UnsupportedProtocolVersion.
   */
  reason: string;
  /** The registrar's words (it names the group, the SPIFFE ID, or who holds the name). */
  message: string;
  /** The ExternalWorkload name this harness asked for. */
  workloadName: string;
  /** How long the harness waits before it tries again (the registrar's retry-after, at least the backoff). */
  retryAfterSeconds: number;
  /** When the refusal came (ISO 8601). */
  at: string;
}

/** How long stop() waits for the registrar to acknowledge the goodbye by closing the stream. */
const GOODBYE_WAIT_MS = 2000;

export class RegistrationComponent extends BaseComponent {
  private config: HarnessConfig;
  private readonly backoff: Backoff;
  /** Aborted to cut short the wait before the next attempt (a reload that changed the registration settings). */
  private retryWait?: AbortController;
  private abort = new AbortController();
  private call: ConnectStream | undefined;
  private client: grpc.Client | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private sequence = 0;
  private accepted: Accepted | undefined;
  private settingsValue: RegistrarSettings | undefined;
  private loop: Promise<void> | undefined;
  private readonly machineId: string;
  private readonly connected: Gauge;
  private readonly refusals: Counter<'reason'>;
  private readonly connects: Counter;
  private readonly onReadiness = (state: WorkloadState) => this.sendState(state);

  constructor(private readonly options: RegistrationComponentOptions) {
    super('registration', options.log.child({ component: 'registration' }));
    this.config = options.config;
    this.backoff = new Backoff(options.backoff ?? { baseMs: 500, maxMs: 30_000 });
    this.machineId = options.machineId ?? machineIdHash();
    this.connected = new Gauge({ name: 'mesh_harness_registration_connected', help: 'Whether the registrar accepted the current stream (1) or not (0).', registers: [options.registry] });
    this.refusals = new Counter({ name: 'mesh_harness_registration_refusals_total', help: 'Refusals from the registrar, by reason.', labelNames: ['reason'], registers: [options.registry] });
    this.connects = new Counter({ name: 'mesh_harness_registration_connects_total', help: 'Streams opened to the registrar.', registers: [options.registry] });
    this.connected.set(0);
  }

  /** The registrar's latest settings for this group (probes, proxy cluster settings), once accepted. */
  settings(): RegistrarSettings | undefined {
    return this.settingsValue;
  }

  /** The ExternalWorkload name: the registrar's answer once accepted, the shared derivation before. */
  workloadName(): string {
    return this.accepted?.workload_name || configuredWorkloadName(this.config);
  }

  async start(): Promise<void> {
    this.abort = new AbortController();
    this.options.readiness.on('change', this.onReadiness);
    this.setState('Pending', { message: 'waiting for a valid SVID before connecting to the registrar' });
    this.loop = this.run(this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.options.readiness.off('change', this.onReadiness);
    this.setState('Stopping', { message: 'saying goodbye to the registrar' });
    await this.goodbye();
    await this.loop?.catch(() => undefined);
    this.connected.set(0);
    this.setState('Stopped', { message: 'stopped', lastError: undefined });
  }

  /** A reload: nothing to check ahead; the commit reconnects on a new registrar address or identity, anything else applies in place. */
  async prepare(config: HarnessConfig): Promise<PreparedUpdate> {
    return { commit: async () => this.apply(config) };
  }

  private apply(config: HarnessConfig): void {
    const before = this.config;
    this.config = config;
    const reconnect = JSON.stringify([before.control, before.workload, before.identity.spiffeId, before.identity.serverName]) !== JSON.stringify([config.control, config.workload, config.identity.spiffeId, config.identity.serverName]);
    if (reconnect && this.call) {
      this.log.info('registration settings changed; reconnecting');
      this.call.cancel();
    } else if (reconnect && this.retryWait) {
      // Waiting after a refusal or a failed connection: the operator may just have fixed the cause.
      this.log.info('registration settings changed; trying again now');
      this.backoff.reset();
      this.retryWait.abort();
    }
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.options.identity.waitForSvid(signal);
      } catch {
        return;
      }
      if (signal.aborted) return;
      const outcome = await this.connectOnce(signal);
      if (signal.aborted) return;
      const delay = Math.max(this.backoff.next(), outcome.retryAfterMs ?? 0);
      if (outcome.phase === 'refused') {
        const refusal: Refusal = { reason: outcome.reason ?? 'Refused', message: outcome.message, workloadName: configuredWorkloadName(this.config), retryAfterSeconds: Math.round(delay / 1000), at: this.now().toISOString() };
        this.setState('Degraded', { message: `refused by the registrar (${refusal.reason}); retrying in ${refusal.retryAfterSeconds}s`, lastError: outcome.message, detail: { refusal } });
      } else {
        this.setState('Degraded', { message: `not connected to the registrar at ${this.config.control.registrarAddress}; retrying in ${Math.round(delay / 1000)}s`, lastError: outcome.message, detail: { refusal: undefined } });
      }
      this.retryWait = new AbortController();
      await sleep(delay, AbortSignal.any([signal, this.retryWait.signal]));
      this.retryWait = undefined;
    }
  }

  private async connectOnce(signal: AbortSignal): Promise<{ phase: 'refused' | 'dropped'; reason?: string; message: string; retryAfterMs?: number }> {
    const svid = this.options.identity.current();
    if (!svid) return { phase: 'dropped', message: 'no SVID' };
    let credentials: grpc.ChannelCredentials;
    try {
      credentials = grpc.credentials.createSsl(
        Buffer.from(await this.options.trustAnchorsPem()),
        Buffer.from(svid.svid.keyPem),
        Buffer.from(svid.svid.chain.map((c) => c.toString()).join('')),
        { checkServerIdentity: (_host, cert) => this.checkRegistrar(cert, svid.spiffeId) },
      );
    } catch (err) {
      return { phase: 'dropped', message: `cannot build TLS credentials: ${(err as Error).message}` };
    }
    const Service = registrationService();
    const host = this.config.control.registrarAddress.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    const client = new Service(this.config.control.registrarAddress, credentials, {
      // TLS sends no IP address as SNI (RFC 6066); the registrar is checked by SPIFFE ID, not by name.
      ...(isIP(host) ? { 'grpc.ssl_target_name_override': 'mesh-registrar' } : {}),
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      // One stream per harness; a failed connection is retried by our backoff, not grpc's.
      'grpc.initial_reconnect_backoff_ms': 1000,
    });
    this.client = client;
    this.setState(this.state().phase === 'Pending' ? 'Starting' : this.state().phase, { message: `connecting to the registrar at ${this.config.control.registrarAddress}` });
    this.connects.inc();
    const call = (client as unknown as { Connect(): ConnectStream }).Connect();
    this.call = call;
    const workloadIps = this.config.workload.ips.length ? this.config.workload.ips : this.options.detectedIps?.() ?? [];
    const versions = this.options.versions?.() ?? { proxy: '', spireAgent: '' };
    call.write({
      hello: {
        protocol_version: PROTOCOL_VERSION,
        group: this.config.workload.group,
        namespace: this.config.workload.namespace,
        node_name: this.config.workload.nodeName,
        workload_ips: workloadIps,
        versions: { harness: harnessVersion(), proxy: versions.proxy, spire_agent: versions.spireAgent },
        workload_name: configuredWorkloadName(this.config),
        state: this.options.readiness.current(),
        server_name: this.config.identity.serverName,
        machine_id: this.machineId,
        proxy_inbound_port: this.config.proxy.inboundPort,
      },
    });

    return new Promise((resolve) => {
      let refused: { reason: string; message: string; retryAfterMs: number } | undefined;
      let lastError = 'the registrar closed the stream';
      const onAbort = () => undefined;
      signal.addEventListener('abort', onAbort, { once: true });
      call.on('data', (message: RegistrarMessage) => {
        if ('accepted' in message && message.accepted) this.onAccepted(message.accepted);
        else if ('refused' in message && message.refused) {
          const r = message.refused;
          refused = { reason: r.reason || 'Refused', message: r.message, retryAfterMs: r.retry_after_seconds * 1000 };
          this.refusals.inc({ reason: refused.reason });
          this.log.warn({ reason: refused.reason }, `the registrar refused this machine: ${r.message}`);
          call.end();
        } else if ('update' in message && message.update) this.applySettings(message.update.settings);
        // Messages from a newer registrar that this harness does not know are ignored.
      });
      call.on('error', (err: grpc.ServiceError) => {
        lastError = err.details || err.message;
      });
      // 'status' comes exactly once, when the call is over in both directions.
      call.on('status', (status: grpc.StatusObject) => {
        if (status.code !== grpc.status.OK && status.details) lastError = status.details;
        signal.removeEventListener('abort', onAbort);
        clearInterval(this.heartbeat);
        this.heartbeat = undefined;
        const wasAccepted = this.accepted !== undefined;
        this.accepted = undefined;
        this.call = undefined;
        this.connected.set(0);
        client.close();
        if (this.client === client) this.client = undefined;
        if (wasAccepted && !refused) this.log.warn({ err: lastError }, 'the registrar stream dropped; reconnecting');
        resolve(refused ? { phase: 'refused', ...refused } : { phase: 'dropped', message: lastError });
      });
      call.on('error', () => undefined);
    });
  }

  private onAccepted(accepted: Accepted): void {
    this.accepted = accepted;
    this.backoff.reset();
    this.connected.set(1);
    const intervalMs = (accepted.heartbeat_interval_seconds || this.config.control.heartbeatInterval / 1000) * 1000;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      this.sequence += 1;
      this.call?.write({ heartbeat: { sequence: this.sequence } });
    }, intervalMs);
    this.heartbeat.unref();
    this.applySettings(accepted.settings ?? null);
    this.setState('Ready', {
      message: `registered as ${accepted.workload_name} with replica ${accepted.replica || '(unnamed)'}`,
      lastError: undefined,
      detail: { workloadName: accepted.workload_name, replica: accepted.replica, registrar: this.config.control.registrarAddress, heartbeatIntervalSeconds: intervalMs / 1000, protocolVersion: accepted.protocol_version, refusal: undefined },
    });
    // State may have changed between the hello and the answer.
    this.sendState(this.options.readiness.current());
  }

  private applySettings(settings: GroupSettings | null): void {
    let probes: Array<Record<string, unknown>> = [];
    try {
      probes = settings?.probes_json ? (JSON.parse(settings.probes_json) as Array<Record<string, unknown>>) : [];
    } catch {
      this.log.warn('the registrar sent probes that are not JSON; ignoring them');
    }
    const proxy = settings?.proxy && settings.proxy.default_inbound_policy
      ? { defaultInboundPolicy: settings.proxy.default_inbound_policy, clusterNetworks: [...settings.proxy.cluster_networks] }
      : undefined;
    const proxyImage = controlPlaneProxy(settings?.proxy?.image_name ?? '', settings?.proxy?.image_version ?? '');
    const next: RegistrarSettings = { probes, ...(proxy ? { proxy } : {}), ...(proxyImage ? { proxyImage } : {}) };
    const previous = this.settingsValue;
    if (JSON.stringify(next) === JSON.stringify(previous)) return;
    this.settingsValue = next;
    if (proxyImage?.image !== previous?.proxyImage?.image) {
      if (proxyImage) this.log.info({ proxyImage: proxyImage.image }, `the control plane's proxy image is ${proxyImage.image}`);
      this.setState(this.state().phase, { detail: { controlPlaneProxy: proxyImage } });
    }
    this.emit('settings', next);
  }

  private sendState(state: WorkloadState): void {
    if (!this.accepted || !this.call) return;
    this.call.write({ state_change: { state } });
  }

  private async goodbye(): Promise<void> {
    const call = this.call;
    if (!call) {
      this.client?.close();
      return;
    }
    clearInterval(this.heartbeat);
    if (this.accepted) call.write({ goodbye: { reason: 'mesh-harness is stopping' } });
    call.end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        call.cancel();
        resolve();
      }, GOODBYE_WAIT_MS);
      call.once('status', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * The registrar's certificate already chains to the trust anchors (TLS checked that);
   * here its SPIFFE ID must be the configured one. Without control.registrarIdentity, any
   * SPIFFE ID in our own trust domain is accepted.
   */
  private checkRegistrar(cert: PeerCertificate, ownId: string): Error | undefined {
    const uris = (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
    const expected = this.config.control.registrarIdentity;
    if (expected) {
      return uris.includes(expected) ? undefined : new Error(`the registrar presented ${JSON.stringify(uris)}, not control.registrarIdentity ${expected}`);
    }
    const trustDomain = new URL(ownId).host;
    return uris.some((u) => u.startsWith(`spiffe://${trustDomain}/`)) ? undefined : new Error(`the registrar presented ${JSON.stringify(uris)}, no SPIFFE ID in trust domain ${trustDomain}`);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A stable, non-reversible identifier of this machine (machine-id(5) asks not to expose it raw). */
function machineIdHash(): string {
  try {
    return createHash('sha256').update(`mesh-harness:${readFileSync('/etc/machine-id', 'utf8').trim()}`).digest('hex').slice(0, 32);
  } catch {
    return '';
  }
}
