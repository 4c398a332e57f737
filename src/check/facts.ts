/**
 * Observations several checks share (the SVID set, the daemon's status, what a name
 * resolves to), each made once, with its own time limit, and shared as a promise: the
 * check that reports the observation and the checks that build on it see the same answer.
 */
import { isIP } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import { adminClientHost } from '../admin/client.ts';
import type { AdminStatus } from '../admin/server.ts';
import { anchorsFileError } from '../config/host-checks.ts';
import type { HarnessConfig } from '../config/types.ts';
import { parseTrustAnchors } from '../identity/verify.ts';
import { parseWorkloadApiAddress, type X509Svid } from '../identity/workload-api-client.ts';
import { resolveBackend, type Backend } from '../iptables/backend.ts';
import type { ResolvedGroup, ResolvedUser } from '../util/users.ts';
import { timeLimit } from './check.ts';
import type { CheckEffects, OwnedListener } from './effects.ts';

export const SVID_FETCH_TIMEOUT_MS = 3000;
export const DNS_TIMEOUT_MS = 2000;
export const DAEMON_TIMEOUT_MS = 1500;
export const ACCOUNT_TIMEOUT_MS = 2000;

/** A control-plane address from the configuration, split. */
export interface Endpoint {
  /** The setting it comes from, such as proxy.destinationAddr. */
  setting: string;
  /** What it is, for people: "destination service". */
  role: string;
  host: string;
  port: number;
}

/** Splits a validated host:port ("[fd00::1]:8086" for IPv6). */
export function splitHostPort(value: string): { host: string; port: number } {
  const colon = value.lastIndexOf(':');
  const host = value.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(value.slice(colon + 1)) };
}

/** The control-plane endpoints this machine talks to, from the configuration. */
export function controlEndpoints(config: HarnessConfig): Endpoint[] {
  const endpoints: Endpoint[] = [];
  const add = (setting: string, role: string, value: string): void => {
    if (value) endpoints.push({ setting, role, ...splitHostPort(value) });
  };
  add('proxy.destinationAddr', 'destination service', config.proxy.destinationAddr);
  add(config.proxy.policyAddr ? 'proxy.policyAddr' : 'proxy.destinationAddr', 'policy service', config.proxy.policyAddr || config.proxy.destinationAddr);
  add('control.registrarAddress', 'registrar', config.control.registrarAddress);
  if (config.spire.mode === 'managed' && config.spire.serverAddress) {
    endpoints.push({ setting: 'spire.serverAddress', role: 'SPIRE server', host: config.spire.serverAddress, port: config.spire.serverPort });
  }
  return endpoints;
}

export type Daemon = { running: true; status: AdminStatus; host: string; port: number } | { running: false; reason: string; answeredWrongly: boolean; host: string; port: number };

export class Facts {
  private readonly memo = new Map<string, Promise<unknown>>();

  constructor(
    readonly config: HarnessConfig,
    readonly effects: CheckEffects,
    /** `check --timeout` over the default bound: every deadline grows or shrinks with it. */
    private readonly scale = 1,
  ) {}

  /** A nominal deadline, scaled to this run's bound. */
  ms(nominal: number): number {
    return Math.round(nominal * this.scale);
  }

  private once<T>(key: string, make: () => Promise<T>): Promise<T> {
    let promise = this.memo.get(key) as Promise<T> | undefined;
    if (!promise) {
      promise = make();
      // Checks that only wait on it must not turn its failure into an unhandled rejection.
      promise.catch(() => undefined);
      this.memo.set(key, promise);
    }
    return promise;
  }

  proxyUser(): Promise<ResolvedUser> {
    return this.once('user', () => timeLimit(this.effects.resolveUser(this.config.proxy.user), this.ms(ACCOUNT_TIMEOUT_MS), `looking up user ${this.config.proxy.user}`));
  }

  proxyGroup(): Promise<ResolvedGroup> {
    return this.once('group', () => timeLimit(this.effects.resolveGroup(this.config.proxy.group), this.ms(ACCOUNT_TIMEOUT_MS), `looking up group ${this.config.proxy.group}`));
  }

  /** The group to ask the Workload API as: the daemon's (proxy.group), when this process may switch to it (root). */
  private async askingGid(): Promise<number | undefined> {
    if (process.geteuid?.() !== 0) return undefined;
    return (await this.proxyGroup().catch(() => undefined))?.gid;
  }

  /** The Workload API socket path; throws the address problem. */
  socketPath(): string {
    return parseWorkloadApiAddress(this.config.identity.workloadApiSocket);
  }

  /** The SVIDs served to a process of the daemon's group (root with primary group proxy.group under systemd). */
  svids(): Promise<{ svids: X509Svid[]; gid: number | undefined }> {
    return this.once('svids', async () => {
      const socketPath = this.socketPath();
      const gid = await this.askingGid();
      const svids = await this.effects.fetchSvids(socketPath, { ...(gid !== undefined ? { gid } : {}), timeoutMs: this.ms(SVID_FETCH_TIMEOUT_MS) });
      return { svids, gid };
    });
  }

  /** The SVID for identity.spiffeId, or undefined when the set lacks it. */
  async svid(): Promise<X509Svid | undefined> {
    const { svids } = await this.svids();
    return svids.find((s) => s.spiffeId === this.config.identity.spiffeId);
  }

  anchors(): Promise<X509Certificate[]> {
    return this.once('anchors', async () => {
      const file = this.config.identity.trustAnchorsFile;
      let pem: string;
      try {
        pem = this.effects.readText(file);
      } catch (err) {
        throw new Error(anchorsFileError(file, err));
      }
      return parseTrustAnchors(pem, file);
    });
  }

  daemon(): Promise<Daemon> {
    return this.once('daemon', async () => {
      const host = adminClientHost(this.config.admin);
      const port = this.config.admin.port;
      try {
        return { running: true, status: await this.effects.daemonStatus(host, port, this.ms(DAEMON_TIMEOUT_MS)), host, port };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        return { running: false, reason: (err as Error).message, answeredWrongly: code !== 'ECONNREFUSED', host, port };
      }
    });
  }

  /** The iptables backend `iptables.backend` selects on this host (detection reads rules, never writes). */
  backend(): Promise<Backend> {
    return this.once('backend', () => resolveBackend(this.effects.runner, { backend: this.config.iptables.backend, ipv6: this.config.host.ipv6 }));
  }

  /** Listening sockets on the ports the harness and the proxy need, with their owners. */
  listeners(ports: readonly number[]): Promise<OwnedListener[]> {
    return this.once(`listeners:${ports.join(',')}`, async () => this.effects.listeners(ports));
  }

  /** Addresses of a host name (an IP literal is its own address). */
  resolve(host: string): Promise<string[]> {
    if (isIP(host)) return Promise.resolve([host]);
    return this.once(`dns:${host}`, async () => {
      const addresses = await timeLimit(this.effects.lookup(host, this.ms(DNS_TIMEOUT_MS)), this.ms(DNS_TIMEOUT_MS + 500), `resolving ${host}`);
      if (addresses.length === 0) throw Object.assign(new Error(`${host} resolves to no address`), { code: 'ENODATA' });
      return addresses;
    });
  }
}
