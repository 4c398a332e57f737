/**
 * The value formats of the schema. Each format checks one field's raw value (plain JSON
 * data from the file, or what `fromText` made of an environment variable or --set flag)
 * and parses it into the typed value the daemon uses: ports as numbers, port ranges and
 * subnets parsed, durations in milliseconds. Problems are whole lines (see problems.ts),
 * each naming the field, the value and what is allowed.
 */
import { isIP } from 'node:net';
import { probeListProblems, type ProbeSpec } from '../probes/spec.ts';
import { parseCidr, type Cidr } from '../util/cidr.ts';
import { formatDuration } from '../util/duration.ts';
import { parseWorkloadApiAddress } from '../identity/workload-api-address.ts';
import { isJsonObject, parseJson, type JsonValue } from './json.ts';
import { joinPath, problem } from './problems.ts';

export type { Cidr };

/** An inclusive port range; a single port has from === to. */
export interface PortRange {
  from: number;
  to: number;
}

export interface WorkloadPort {
  port: number;
  name?: string;
  protocol?: 'TCP';
}

export type { ProbeSpec };

export type Parsed<T> = { ok: true; value: T } | { ok: false; problems: string[] };

export interface Format<T> {
  /** For the docs table. */
  summary: string;
  /** Completes "<field>: got <value>; ...". */
  allowed: string;
  parse(value: JsonValue, path: string): Parsed<T>;
  /** Environment or --set text to the raw value; plain text by default. */
  fromText?(text: string): JsonValue;
  /** A schema default, which is trusted (durations are written in milliseconds there). */
  fromDefault?(value: unknown): T;
  /** The typed value back as config data, for `config show`. */
  show?(value: T): JsonValue;
}

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = <T>(path: string, value: unknown, allowed: string): Parsed<T> => ({ ok: false, problems: [problem(path, value, allowed)] });

// Text the daemon passes to programs, files and logs: no NUL, newline or other control
// character, which would truncate an argument or forge a log line.
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

export function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535;
}

function text(summary: string, allowed: string, test: (v: string) => boolean): Format<string> {
  return {
    summary,
    allowed,
    parse: (v, path) => (typeof v === 'string' && !CONTROL.test(v) && test(v) ? ok(v) : bad(path, v, allowed)),
  };
}

function orEmpty(format: Format<string>): Format<string> {
  return { ...format, parse: (v, path) => (v === '' ? ok('') : format.parse(v, path)), allowed: `${format.allowed}, or "" for none` };
}

/** "a,b" or a JSON list from the environment or a flag; anything else stays text and is refused. */
function listFromText(raw: string): JsonValue {
  const trimmed = raw.trim();
  if (trimmed.startsWith('[')) return jsonFromText(raw);
  return trimmed === '' ? [] : trimmed.split(',').map((s) => s.trim()).map((s) => (/^\d{1,6}$/.test(s) ? Number(s) : s));
}

/** JSON from the environment or a flag, with the file's limits; text that is not JSON stays text (and is refused). */
function jsonFromText(raw: string): JsonValue {
  try {
    return parseJson(raw);
  } catch {
    return raw;
  }
}

/** A list whose entries are each parsed by `entry`; a single value is refused, not wrapped. */
function list<T>(summary: string, allowed: string, entry: (v: JsonValue, path: string) => Parsed<T>): Format<T[]> {
  return {
    summary,
    allowed,
    fromText: listFromText,
    parse(v, path) {
      if (!Array.isArray(v)) {
        const hint = typeof v === 'string' || typeof v === 'number' ? ` (write [${JSON.stringify(v)}] for one entry)` : '';
        return bad(path, v, `${allowed}${hint}`);
      }
      const values: T[] = [];
      const problems: string[] = [];
      v.forEach((item, i) => {
        const parsed = entry(item, joinPath(path, i));
        if (parsed.ok) values.push(parsed.value);
        else problems.push(...parsed.problems);
      });
      return problems.length ? { ok: false, problems } : ok(values);
    },
  };
}

/** A port "22" / 22 or an inclusive range "1000-2000". */
export function parsePortSpec(value: unknown): PortRange | undefined {
  if (typeof value === 'number') return isPort(value) ? { from: value, to: value } : undefined;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(value.trim());
  if (!match) return undefined;
  const from = Number(match[1]);
  const to = match[2] === undefined ? from : Number(match[2]);
  return isPort(from) && isPort(to) && from <= to ? { from, to } : undefined;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "100ms", "10s", "5m", "1h" in milliseconds. A bare number is refused: 30 could mean 30 ms or 30 s. */
export const DURATION_ALLOWED = 'must be a duration with a unit, such as 100ms, 10s, 5m or 1h';

function parseDurationValue(v: JsonValue, path: string): Parsed<number> {
  if (typeof v === 'number' || (typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v))) {
    const n = String(v).trim();
    return bad(path, v, `${DURATION_ALLOWED}; a bare number has no unit: did you mean ${n}s?`);
  }
  const match = typeof v === 'string' ? /^(\d{1,12}(?:\.\d{1,6})?)(ms|s|m|h)$/.exec(v.trim()) : null;
  if (!match) return bad(path, v, DURATION_ALLOWED);
  return ok(Math.round(Number(match[1]) * UNIT_MS[match[2]!]!));
}

function unknownKeys(obj: Record<string, unknown>, allowedKeys: string[], path: string): string[] {
  return Object.keys(obj)
    .filter((k) => !allowedKeys.includes(k))
    .map((k) => problem(joinPath(path, k), obj[k], `unknown key; allowed: ${allowedKeys.join(', ')}`));
}

function parseWorkloadPort(v: JsonValue, path: string): Parsed<WorkloadPort> {
  if (typeof v === 'number' || (typeof v === 'string' && /^\d{1,5}$/.test(v))) {
    const port = Number(v);
    return isPort(port) ? ok({ port }) : bad(path, v, 'must be a port number from 1 to 65535');
  }
  if (!isJsonObject(v)) return bad(path, v, 'must be a port number or {"port": 8080, "name": "http", "protocol": "TCP"}');
  const problems = unknownKeys(v, ['port', 'name', 'protocol'], path);
  const entry: WorkloadPort = { port: 0 };
  if (isPort(v.port)) entry.port = v.port;
  else problems.push(problem(joinPath(path, 'port'), v.port, 'must be a port number from 1 to 65535'));
  if (v.name !== undefined) {
    if (typeof v.name === 'string' && /^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/.test(v.name)) entry.name = v.name;
    else problems.push(problem(joinPath(path, 'name'), v.name, 'must be an IANA service name: lowercase letters, digits and "-", at most 15 characters'));
  }
  if (v.protocol !== undefined) {
    if (v.protocol === 'TCP') entry.protocol = 'TCP';
    else problems.push(problem(joinPath(path, 'protocol'), v.protocol, 'must be "TCP" (the only protocol Linkerd proxies)'));
  }
  return problems.length ? { ok: false, problems } : ok(entry);
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

const showRange = (r: PortRange): JsonValue => (r.from === r.to ? r.from : `${r.from}-${r.to}`);

/** Every format the schema may name, with the TypeScript type it parses into. */
export const formats = {
  'workload-api-address': {
    summary: 'Unix socket: unix:///path or an absolute path',
    allowed: 'must be a Unix socket: unix:///path/to/api.sock or an absolute path',
    parse: (v: JsonValue, path: string): Parsed<string> => {
      if (typeof v !== 'string' || CONTROL.test(v)) return bad(path, v, 'must be a Unix socket: unix:///path/to/api.sock or an absolute path');
      try {
        parseWorkloadApiAddress(v);
        return ok(v);
      } catch (err) {
        return bad(path, v, `it ${(err as Error).message.replace(/^Workload API (address|socket path) "[^"]*" /, '')}`);
      }
    },
  } satisfies Format<string>,
  'nonempty-string': text('non-empty text', 'must be non-empty text without control characters', (v) => v.trim() !== ''),
  'optional-string': text('text, may be empty', 'must be text without control characters', () => true),
  path: text('file path (no control characters)', 'must be a non-empty path without NUL, newline or other control characters', (v) => v.trim() !== ''),
  'optional-path': orEmpty(text('file path, may be empty', 'must be a path without NUL, newline or other control characters', (v) => v.trim() !== '')),
  command: text('program path or name', 'must be an absolute path or a program name looked up on PATH, without control characters', (v) => v.trim() !== '' && !v.startsWith('-')),
  'account-name': text(
    'user/group name or id',
    'must be a user or group name (letters, digits, "_", ".", "-", not starting with "-") or a numeric id',
    (v) => /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}\$?$/.test(v),
  ),
  'ip-address': text('IP address', 'must be an IPv4 or IPv6 address such as 127.0.0.1 or ::1', (v) => isIP(v) !== 0),
  'spiffe-id-or-empty': orEmpty(text('`spiffe://` ID', 'must be a SPIFFE ID such as spiffe://root.linkerd.cluster.local/vm/web (lowercase trust domain, no trailing slash)', (v) => /^spiffe:\/\/[a-z0-9._-]+(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$/.test(v))),
  'dns-name-or-empty': orEmpty(text('DNS name', 'must be a lowercase DNS name such as vm.web.cluster.local', (v) => /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(v))),
  'k8s-name-or-empty': orEmpty(text('Kubernetes name', 'must be a Kubernetes name: lowercase letters, digits and "-", at most 63 characters', (v) => /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v))),
  'host-port-or-empty': orEmpty(
    text('`host:port`', 'must be host:port, such as linkerd-dst-headless.linkerd.svc.cluster.local.:8086 or [fd00::1]:8086', (v) => {
      const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(v);
      return m !== null && isPort(Number(m[3])) && (m[1] === undefined || isIP(m[1]) === 6);
    }),
  ),
  bool: {
    summary: '`true` or `false`',
    allowed: 'must be true or false',
    fromText: (t) => (t.trim() === 'true' ? true : t.trim() === 'false' ? false : t),
    parse: (v, path) => (typeof v === 'boolean' ? ok(v) : bad(path, v, 'must be true or false')),
  } satisfies Format<boolean>,
  'port-number': {
    summary: 'port 1-65535',
    allowed: 'must be a port number from 1 to 65535',
    fromText: (t) => (/^\s*\d{1,6}\s*$/.test(t) ? Number(t) : t),
    parse: (v, path) => (isPort(v) ? ok(v) : bad(path, v, 'must be a port number from 1 to 65535')),
  } satisfies Format<number>,
  duration: {
    summary: 'duration',
    allowed: DURATION_ALLOWED,
    parse: parseDurationValue,
    fromDefault: (v) => v as number,
    show: (ms) => formatDuration(ms),
  } satisfies Format<number>,
  'ip-list': {
    ...list('list of IPs (one v4, one v6)', 'must be a list of IP addresses, such as ["10.0.0.5", "fd00::5"]', (v, path) =>
      typeof v === 'string' && isIP(v) !== 0 ? ok(v) : bad<string>(path, v, 'must be an IPv4 or IPv6 address'),
    ),
  },
  'port-spec-list': {
    ...list('list of ports or `low-high` ranges', 'must be a list of ports (1-65535) or ranges "low-high", such as [22, "8000-8100"]', (v, path) => {
      const range = parsePortSpec(v);
      return range ? ok(range) : bad<PortRange>(path, v, 'must be a port from 1 to 65535 or a range "low-high" with low <= high');
    }),
    show: (ranges: PortRange[]) => ranges.map(showRange),
  },
  'cidr-list': {
    ...list('list of CIDRs', 'must be a list of CIDRs such as ["10.0.0.0/8", "fd00::/8"]', (v, path) => {
      const cidr = typeof v === 'string' ? parseCidr(v) : undefined;
      return cidr ? ok(cidr) : bad<Cidr>(path, v, 'must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or a bare address');
    }),
    show: (cidrs: Cidr[]) => cidrs.map((c) => c.text),
  },
  'workload-ports': {
    ...list('list of ports', 'must be a list of ports, each a number or {"port": 8080, "name": "http", "protocol": "TCP"}', parseWorkloadPort),
    show: (ports: WorkloadPort[]) => ports.map((p) => ({ ...p })),
  },
  'probe-list': {
    summary: 'list of probes',
    allowed: 'must be a list of probes with Kubernetes probe fields (httpGet, tcpSocket, grpc or exec, periodSeconds, ...)',
    fromText: jsonFromText,
    // The probes' own rules (src/probes/spec.ts), shared with the ExternalGroup's probes.
    parse(v: JsonValue, path: string): Parsed<ProbeSpec[]> {
      const problems = probeListProblems(v, path);
      return problems.length ? { ok: false, problems } : ok(v as unknown as ProbeSpec[]);
    },
    show: (probes: ProbeSpec[]) => probes as unknown as JsonValue,
  },
  'env-map': {
    summary: 'object of strings',
    allowed: 'must be an object of environment variable names to string values',
    fromText: jsonFromText,
    parse(v, path) {
      if (!isJsonObject(v)) return bad(path, v, 'must be an object of environment variable names to string values, such as {"RUST_BACKTRACE": "1"}');
      const env: Record<string, string> = {};
      const problems: string[] = [];
      for (const [key, value] of Object.entries(v)) {
        const at = joinPath(path, key);
        if (!ENV_NAME.test(key)) problems.push(problem(at, key, 'the name must be letters, digits and "_", not starting with a digit'));
        else if (typeof value !== 'string' || value.includes('\0')) problems.push(problem(at, value, 'must be a string without NUL'));
        else env[key] = value;
      }
      return problems.length ? { ok: false, problems } : ok(env);
    },
    show: (env: Record<string, string>) => ({ ...env }),
  } satisfies Format<Record<string, string>>,
} as const;

export type FormatName = keyof typeof formats;

/** The TypeScript type a format parses into. */
export type FormatType<F> = F extends readonly (infer U extends string)[]
  ? U
  : F extends FormatName
    ? (typeof formats)[F] extends { parse(v: JsonValue, p: string): Parsed<infer T> }
      ? T
      : never
    : never;

/** The format object for a schema `format` (a name, or a list of allowed strings). */
export function formatFor(format: FormatName | readonly string[]): Format<unknown> {
  if (typeof format !== 'string') {
    const allowed = `must be one of ${format.map((f) => JSON.stringify(f)).join(', ')}`;
    return { summary: format.map((f) => `\`${f}\``).join(', '), allowed, parse: (v, path) => (typeof v === 'string' && format.includes(v) ? ok(v) : bad(path, v, allowed)) };
  }
  return formats[format] as Format<unknown>;
}
