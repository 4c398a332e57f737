/**
 * Convict formats for the harness schema. Each validator throws a message that says what
 * is allowed, written to complete the sentence "<field>: got <value>; <message>". Each
 * coercer turns environment/flag text into the typed value, and leaves text it cannot
 * parse untouched so that validation reports it instead of crashing.
 */
import convict from 'convict';
import { isIP } from 'node:net';
import { probeListProblems } from '../probes/spec.ts';
import { parseDuration } from '../util/duration.ts';

function fail(message: string): never {
  throw new Error(message);
}

/** "a,b" or '["a","b"]' from the environment; arrays from the file pass through. */
function listFromText(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return text;
    }
  }
  return trimmed === '' ? [] : trimmed.split(',').map((s) => s.trim());
}

function jsonFromText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535;
}

/** A port "22" / 22 or an inclusive range "1000-2000". */
export function parsePortSpec(value: unknown): { from: number; to: number } | undefined {
  if (typeof value === 'number') return isPort(value) ? { from: value, to: value } : undefined;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(value.trim());
  if (!match) return undefined;
  const from = Number(match[1]);
  const to = match[2] === undefined ? from : Number(match[2]);
  return isPort(from) && isPort(to) && from <= to ? { from, to } : undefined;
}

/** An IPv4 or IPv6 CIDR ("10.0.0.0/8", "fd00::/8") or a bare address. */
export function parseCidr(value: unknown): { address: string; prefix: number; family: 4 | 6 } | undefined {
  if (typeof value !== 'string') return undefined;
  const [address = '', prefixText, extra] = value.trim().split('/');
  if (extra !== undefined) return undefined;
  const family = isIP(address);
  if (family !== 4 && family !== 6) return undefined;
  const max = family === 4 ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefix > max) return undefined;
  return { address, prefix, family };
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function registerFormats(): void {
  convict.addFormats({
    'nonempty-string': {
      validate: (v: unknown) => {
        if (typeof v !== 'string' || v.trim() === '') fail('must be a non-empty string');
      },
    },
    'optional-string': {
      validate: (v: unknown) => {
        if (typeof v !== 'string') fail('must be a string');
      },
    },
    bool: {
      validate: (v: unknown) => {
        if (typeof v !== 'boolean') fail('must be true or false');
      },
      coerce: (v: string) => (v === 'true' ? true : v === 'false' ? false : v),
    },
    'port-number': {
      validate: (v: unknown) => {
        if (!isPort(v)) fail('must be a port number from 1 to 65535');
      },
      coerce: (v: string) => (/^\d+$/.test(v.trim()) ? Number(v) : v),
    },
    'positive-int': {
      validate: (v: unknown) => {
        if (!(Number.isInteger(v) && (v as number) >= 1)) fail('must be a whole number of at least 1');
      },
      coerce: (v: string) => (/^\d+$/.test(v.trim()) ? Number(v) : v),
    },
    duration: {
      validate: (v: unknown) => {
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail('must be a duration such as 100ms, 10s, 5m or 1h');
      },
      coerce: (v: string) => parseDuration(v) ?? v,
    },
    'spiffe-id-or-empty': {
      validate: (v: unknown) => {
        if (v === '') return;
        if (typeof v !== 'string' || !/^spiffe:\/\/[a-z0-9._-]+(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$/.test(v)) {
          fail('must be a SPIFFE ID such as spiffe://root.linkerd.cluster.local/vm/web (lowercase trust domain, no trailing slash)');
        }
      },
    },
    'dns-name-or-empty': {
      validate: (v: unknown) => {
        if (v === '') return;
        if (typeof v !== 'string' || !/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(v)) {
          fail('must be a lowercase DNS name such as vm.web.cluster.local');
        }
      },
    },
    'k8s-name-or-empty': {
      validate: (v: unknown) => {
        if (v === '') return;
        if (typeof v !== 'string' || !/^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v)) {
          fail('must be a Kubernetes name: lowercase letters, digits and "-", at most 63 characters');
        }
      },
    },
    'host-port-or-empty': {
      validate: (v: unknown) => {
        if (v === '') return;
        if (typeof v !== 'string' || !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(v) || !isPort(Number(v.slice(v.lastIndexOf(':') + 1)))) {
          fail('must be host:port, such as linkerd-dst-headless.linkerd.svc.cluster.local.:8086 or [fd00::1]:8086');
        }
      },
    },
    'ip-list': {
      validate: (v: unknown) => {
        if (!Array.isArray(v)) fail('must be a list of IP addresses');
        const bad = v.filter((ip) => typeof ip !== 'string' || isIP(ip) === 0);
        if (bad.length) fail(`must be a list of IP addresses; not an address: ${bad.map((b) => JSON.stringify(b)).join(', ')}`);
        if (v.filter((ip) => isIP(ip as string) === 4).length > 1 || v.filter((ip) => isIP(ip as string) === 6).length > 1) {
          fail('may hold at most one IPv4 and one IPv6 address (an ExternalWorkload allows no more)');
        }
      },
      coerce: listFromText,
    },
    'port-spec-list': {
      validate: (v: unknown) => {
        if (!Array.isArray(v)) fail('must be a list of ports or ranges such as [22, "8000-8100"]');
        const bad = v.filter((p) => parsePortSpec(p) === undefined);
        if (bad.length) fail(`must be a list of ports (1-65535) or ranges "low-high"; not valid: ${bad.map((b) => JSON.stringify(b)).join(', ')}`);
      },
      coerce: (v: string) => {
        const list = listFromText(v);
        return Array.isArray(list) ? list.map((p) => (typeof p === 'string' && /^\d+$/.test(p) ? Number(p) : p)) : list;
      },
    },
    'cidr-list': {
      validate: (v: unknown) => {
        if (!Array.isArray(v)) fail('must be a list of CIDRs such as ["10.0.0.0/8", "fd00::/8"]');
        const bad = v.filter((c) => parseCidr(c) === undefined);
        if (bad.length) fail(`must be a list of IPv4 or IPv6 CIDRs; not valid: ${bad.map((b) => JSON.stringify(b)).join(', ')}`);
      },
      coerce: listFromText,
    },
    'workload-ports': {
      validate: (v: unknown) => {
        if (!Array.isArray(v)) fail('must be a list of ports, each a number or {"port": 8080, "name": "http", "protocol": "TCP"}');
        v.forEach((entry, i) => {
          const p = typeof entry === 'number' ? { port: entry } : entry;
          if (typeof p !== 'object' || p === null) fail(`entry ${i} must be a number or an object with "port"`);
          const { port, name, protocol, ...rest } = p as Record<string, unknown>;
          if (Object.keys(rest).length) fail(`entry ${i} has unknown key(s) ${Object.keys(rest).join(', ')}; allowed: port, name, protocol`);
          if (!isPort(port)) fail(`entry ${i} needs "port" from 1 to 65535`);
          if (name !== undefined && (typeof name !== 'string' || !/^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/.test(name))) {
            fail(`entry ${i} "name" must be an IANA service name: lowercase, at most 15 characters`);
          }
          if (protocol !== undefined && protocol !== 'TCP') fail(`entry ${i} "protocol" must be TCP (the only protocol Linkerd proxies)`);
        });
      },
      coerce: (v: string) => {
        const list = listFromText(v);
        return Array.isArray(list) ? list.map((p) => (typeof p === 'string' && /^\d+$/.test(p) ? Number(p) : p)) : list;
      },
    },
    'probe-list': {
      validate: (v: unknown) => {
        // Paths relative to the field: convict names the field itself.
        const problems = probeListProblems(v, '');
        if (problems.length) fail(problems.join('; '));
      },
      coerce: jsonFromText,
    },
    'env-map': {
      validate: (v: unknown) => {
        if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('must be an object of environment variable names to string values');
        for (const [k, val] of Object.entries(v)) {
          if (!ENV_NAME.test(k)) fail(`"${k}" is not a valid environment variable name`);
          if (typeof val !== 'string') fail(`value of "${k}" must be a string`);
        }
      },
      coerce: jsonFromText,
    },
  });
}
