/**
 * The development proxy reads the same LINKERD2_PROXY_* variables as linkerd2-proxy and
 * rejects the same mistakes, so a harness that starts it correctly starts the real proxy
 * correctly. Only SPIRE identity is supported (that is all the harness renders).
 */
import type { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { parseTrustAnchors } from '../../identity/verify.ts';
import { parseWorkloadApiAddress } from '../../identity/workload-api-client.ts';
import { PROXY_ENV } from '../../proxy/env.ts';

export interface SocketAddress {
  /** An IP literal without brackets. */
  host: string;
  port: number;
}

export type DevProxyLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface DevProxyConfig {
  anchors: X509Certificate[];
  serverId: string;
  serverName: string;
  /** Socket path of the Workload API. */
  workloadApiSocket: string;
  destinationAddr: string;
  policyAddr: string;
  policyWorkload: string;
  destinationContext: string;
  inbound: SocketAddress;
  outbound: SocketAddress[];
  admin: SocketAddress;
  /** Workload ports; inbound connections are forwarded to one of them on 127.0.0.1. */
  inboundPorts: number[];
  shutdownGraceMs: number;
}

export interface LogSettings {
  level: DevProxyLogLevel;
  format: 'plain' | 'json';
}

const DEFAULTS = {
  inbound: '0.0.0.0:4143',
  outbound: '127.0.0.1:4140',
  admin: '127.0.0.1:4191',
  control: '0.0.0.0:4190',
  shutdownGraceMs: 120_000,
};

const DURATION = /^\s*(\d+)(ms|s|m|h|d)?\s*$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DNS_NAME = /^(?=.{1,253}\.?$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\.?$/i;
const SPIFFE_ID = /^spiffe:\/\/[a-z0-9._-]+(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$/;
const LEVELS: DevProxyLogLevel[] = ['trace', 'debug', 'info', 'warn', 'error'];

class Invalid extends Error {}

/** An integer with an optional unit, as linkerd2-proxy reads durations ("30s", "1500ms", "0"). */
export function parseProxyDuration(text: string): number {
  const match = DURATION.exec(text);
  if (!match || (match[2] === undefined && Number(match[1]) !== 0)) throw new Invalid('not a duration such as 30s or 1500ms (an integer with a unit: ms, s, m, h, d)');
  return Number(match[1]) * UNIT_MS[match[2] ?? 's']!;
}

function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new Invalid(`"${text}" is not a port number`);
  return Number(text);
}

/** A socket address: an IP literal and a port (`0.0.0.0:4143`, `[::]:4143`). */
export function parseSocketAddress(text: string): SocketAddress {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!match) throw new Invalid('not a socket address such as 0.0.0.0:4143 or [::]:4143');
  const host = match[1]!;
  const bracketed = text.startsWith('[');
  if (isIP(host) !== (bracketed ? 6 : 4)) throw new Invalid('the host must be an IP address (IPv6 in brackets)');
  return { host, port: parsePort(match[2]!) };
}

/** A control-plane address: a DNS name or IP and a port. */
function parseControlAddress(text: string): string {
  const match = /^(\[[^\]]+\]|[A-Za-z0-9.-]+):(\d+)$/.exec(text);
  if (!match) throw new Invalid('not host:port');
  parsePort(match[2]!);
  return text;
}

function isLoopback(address: string): boolean {
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === 'localhost.' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** Ports and ranges separated by commas ("8080,9000-9002"), as LINKERD2_PROXY_INBOUND_PORTS. */
export function parsePortSet(text: string): number[] {
  const ports: number[] = [];
  for (const part of text.split(',').map((p) => p.trim())) {
    const range = /^(\d+)-(\d+)$/.exec(part);
    if (range) {
      const [low, high] = [parsePort(range[1]!), parsePort(range[2]!)];
      if (low > high) throw new Invalid(`range ${part} is backwards`);
      for (let p = low; p <= high; p++) ports.push(p);
    } else {
      ports.push(parsePort(part));
    }
  }
  return [...new Set(ports)];
}

/**
 * LINKERD2_PROXY_LOG is a tracing filter ("warn,linkerd=info"); the stand-in has one
 * target, so the most verbose level named anywhere in it applies.
 */
export function logSettings(env: NodeJS.ProcessEnv): { settings: LogSettings; problems: string[] } {
  const problems: string[] = [];
  let format: LogSettings['format'] = 'plain';
  const rawFormat = env[PROXY_ENV.logFormat];
  if (rawFormat !== undefined) {
    if (/^(plain|json)$/i.test(rawFormat)) format = rawFormat.toLowerCase() as LogSettings['format'];
    else problems.push(`${PROXY_ENV.logFormat}=${JSON.stringify(rawFormat)} is not valid: must be plain or json`);
  }
  const named = (env[PROXY_ENV.log] ?? 'info')
    .split(',')
    .map((directive) => directive.split('=').pop()!.trim().toLowerCase())
    .filter((level): level is DevProxyLogLevel => (LEVELS as string[]).includes(level));
  const level = named.length ? LEVELS[Math.min(...named.map((l) => LEVELS.indexOf(l)))]! : 'info';
  return { settings: { level, format }, problems };
}

export type ParsedEnv = { ok: true; config: DevProxyConfig } | { ok: false; problems: string[] };

/** Reads and validates the proxy environment; every problem is reported, one line each, naming its variable. */
export function parseDevProxyEnv(env: NodeJS.ProcessEnv): ParsedEnv {
  const problems: string[] = [];
  const value = <T>(name: string, parse: (text: string) => T, fallback?: string): T | undefined => {
    const text = env[name] ?? fallback;
    if (text === undefined) return undefined;
    try {
      return parse(text);
    } catch (err) {
      problems.push(err instanceof Invalid ? `${name}=${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text)} is not valid: ${err.message}` : (err as Error).message);
      return undefined;
    }
  };
  const required = <T>(name: string, parse: (text: string) => T, why = 'must be set'): T | undefined => {
    if (env[name] === undefined || env[name] === '') {
      problems.push(`${name} ${why}`);
      return undefined;
    }
    return value(name, parse);
  };
  const text = (t: string) => t;

  if (env.LINKERD2_PROXY_IDENTITY_DISABLED) problems.push('LINKERD2_PROXY_IDENTITY_DISABLED is no longer supported; identity must be enabled');
  const anchors = required(PROXY_ENV.trustAnchors, (pem) => parseTrustAnchors(pem, PROXY_ENV.trustAnchors));
  const serverId = required(PROXY_ENV.serverId, (id) => {
    if (!SPIFFE_ID.test(id)) throw new Invalid('SPIRE identity needs a SPIFFE ID such as spiffe://root.linkerd.cluster.local/vm/web');
    return id;
  });
  const serverName = required(PROXY_ENV.serverName, (name) => {
    if (!DNS_NAME.test(name)) throw new Invalid('not a DNS name');
    return name;
  });
  // The deprecated name still works, as in the real proxy; the current one is what a missing value is reported as.
  const spireName = env[PROXY_ENV.workloadApiAddress] === undefined && env.LINKERD2_PROXY_IDENTITY_SPIRE_SOCKET !== undefined ? 'LINKERD2_PROXY_IDENTITY_SPIRE_SOCKET' : PROXY_ENV.workloadApiAddress;
  const workloadApiSocket = required(
    spireName,
    (address) => {
      try {
        return parseWorkloadApiAddress(address);
      } catch (err) {
        throw new Invalid((err as Error).message);
      }
    },
    'must be set (the development proxy gets its identity from SPIRE only)',
  );
  const destinationAddr = required(PROXY_ENV.destinationAddr, parseControlAddress, 'must be set: no destination service configured');
  if (destinationAddr && !isLoopback(destinationAddr)) required(PROXY_ENV.destinationName, text, `must be set together with ${PROXY_ENV.destinationAddr}`);
  else value(PROXY_ENV.destinationName, text);
  const policyAddr = required(PROXY_ENV.policyAddr, parseControlAddress, 'must be set: no policy service configured');
  if (policyAddr && !isLoopback(policyAddr)) required(PROXY_ENV.policyName, text, `must be set together with ${PROXY_ENV.policyAddr}`);
  const policyWorkload = required(PROXY_ENV.policyWorkload, text, `must be set with ${PROXY_ENV.policyAddr}`);
  const destinationContext = env[PROXY_ENV.destinationContext] ?? '';

  const inbound = value(PROXY_ENV.inboundListenAddr, parseSocketAddress, DEFAULTS.inbound);
  const outbound =
    env[PROXY_ENV.outboundListenAddrs] !== undefined
      ? value(PROXY_ENV.outboundListenAddrs, (list) => {
          const addresses = list.split(',').map((a) => parseSocketAddress(a.trim()));
          if (addresses.length > 2) throw new Invalid('only two addresses are supported');
          return addresses;
        })
      : value(PROXY_ENV.outboundListenAddr, (a) => [parseSocketAddress(a)], DEFAULTS.outbound);
  const admin = value(PROXY_ENV.adminListenAddr, parseSocketAddress, DEFAULTS.admin);
  value(PROXY_ENV.controlListenAddr, parseSocketAddress, DEFAULTS.control);
  const inboundPorts = value(PROXY_ENV.inboundPorts, parsePortSet) ?? [];
  const shutdownGraceMs = value(PROXY_ENV.shutdownGracePeriod, parseProxyDuration) ?? DEFAULTS.shutdownGraceMs;
  problems.push(...logSettings(env).problems);

  if (problems.length || !anchors || !serverId || !serverName || !workloadApiSocket || !destinationAddr || !policyAddr || !policyWorkload || !inbound || !outbound || !admin) {
    return { ok: false, problems };
  }
  return {
    ok: true,
    config: { anchors, serverId, serverName, workloadApiSocket, destinationAddr, policyAddr, policyWorkload, destinationContext, inbound, outbound, admin, inboundPorts, shutdownGraceMs },
  };
}
