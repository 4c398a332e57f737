/**
 * Workload probe specifications: the Kubernetes `Probe` object (core/v1) as written in the
 * harness config (`probes.workload`) and in an ExternalGroup's `spec.probes`, validated
 * strictly and parsed once into typed probes with the Kubernetes defaults filled in.
 *
 * Pure: no I/O. The config schema's `probe-list` format and the registrar's ExternalGroup
 * checks call `probeListProblems`; the probes component calls `parseProbeList`.
 *
 * Differences from a Pod's probe, each deliberate:
 * - `name` (optional) is ours: it names the probe in messages, /status and metrics.
 * - `httpGet.host` / `tcpSocket.host` default to 127.0.0.1 (a Pod's default is the Pod IP;
 *   on a VM the workload usually listens on loopback or on every address).
 * - `terminationGracePeriodSeconds` is refused: it applies to liveness probes, and these
 *   probes only decide readiness.
 * - seconds fields are capped at one day (Node timers cannot express Kubernetes' int32).
 * - a probe from the cluster (`source: 'cluster'`) is held to CLUSTER_PROBE_LIMITS: bounded
 *   timing, headers and size, and no hop-by-hop or message-framing headers. Where it may
 *   connect is decided with the VM's facts, in targets.ts.
 */

/** The raw, validated shape (what users write). */
export interface ProbeSpec {
  name?: string;
  httpGet?: {
    path?: string;
    port: number | string;
    host?: string;
    scheme?: 'HTTP' | 'HTTPS';
    httpHeaders?: Array<{ name: string; value: string }>;
  };
  tcpSocket?: { port: number | string; host?: string };
  grpc?: { port: number; service?: string };
  exec?: { command: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

/** A port by number, or by the name of a workload or group template port (resolved when the probe runs). */
export type PortRef = number | string;

export type ProbeHandler =
  | { kind: 'httpGet'; scheme: 'HTTP' | 'HTTPS'; host: string; port: PortRef; path: string; headers: Array<{ name: string; value: string }> }
  | { kind: 'tcpSocket'; host: string; port: PortRef }
  | { kind: 'grpc'; host: string; port: number; service: string }
  | { kind: 'exec'; command: string[] };

export type ProbeSource = 'local' | 'cluster';

/** A parsed probe with every default applied. */
export interface Probe {
  /** The user's `name`, else where it was written: `probes.workload[0]`, `spec.probes[1]`. */
  name: string;
  source: ProbeSource;
  handler: ProbeHandler;
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
}

/** Kubernetes' defaults for a probe's timing fields. */
export const PROBE_DEFAULTS = {
  initialDelaySeconds: 0,
  periodSeconds: 10,
  timeoutSeconds: 1,
  successThreshold: 1,
  failureThreshold: 3,
} as const;

export const DEFAULT_PROBE_HOST = '127.0.0.1';

const HANDLERS = ['httpGet', 'tcpSocket', 'grpc', 'exec'] as const;
const TIMING = ['initialDelaySeconds', 'periodSeconds', 'timeoutSeconds', 'successThreshold', 'failureThreshold'] as const;
const PROBE_KEYS = ['name', ...HANDLERS, ...TIMING];
const HANDLER_KEYS: Record<(typeof HANDLERS)[number], string[]> = {
  httpGet: ['path', 'port', 'host', 'scheme', 'httpHeaders'],
  tcpSocket: ['port', 'host'],
  grpc: ['port', 'service'],
  exec: ['command'],
};
const MAX_SECONDS = 86_400;

/**
 * What a probe from the ExternalGroup may ask of a VM. Whoever edits the group writes these
 * probes for every VM in it; the VM runs them on its own resources, so their cost and their
 * reach are bounded here (see docs/probes.md, "Threat model"). Out of bounds is refused with
 * the field named, never clamped: a clamped probe would behave other than written.
 */
export const CLUSTER_PROBE_LIMITS = {
  seconds: { initialDelaySeconds: 3600, periodSeconds: 300, timeoutSeconds: 60 } as Partial<Record<(typeof TIMING)[number], number>>,
  probes: 32,
  headers: 16,
  headerValueChars: 1024,
  pathChars: 2048,
} as const;

/**
 * Headers that describe the connection or the message framing rather than the request:
 * set by the cluster they could split or smuggle a request on a local server or proxy, and
 * none of them is needed to ask "is this workload healthy". Host stays allowed: naming a
 * virtual host is the documented Kubernetes way, and the target address is bounded anyway.
 */
const CLUSTER_REFUSED_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'expect']);

/** IANA_SVC_NAME, as Kubernetes validates a named port. */
const PORT_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;
/** RFC 7230 token: what Kubernetes accepts as an HTTP header name. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PROBE_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
/** An IP address or a DNS name; nothing that could smuggle a path, user info or a port into a URL. */
const HOST = /^(\[?[0-9A-Fa-f:.]+\]?|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?)$/;

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isPortNumber(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535;
}

class Checker {
  readonly problems: string[] = [];

  bad(path: string, value: unknown, allowed: string): void {
    this.problems.push(`${path}: got ${show(value)}; ${allowed}`);
  }

  unknownKeys(path: string, object: Record<string, unknown>, allowed: string[]): void {
    for (const key of Object.keys(object)) {
      if (allowed.includes(key)) continue;
      const hint = key === 'terminationGracePeriodSeconds' ? 'applies to liveness probes only; these probes decide readiness' : `allowed: ${allowed.join(', ')}`;
      this.problems.push(`${path}.${key}: unknown key; ${hint}`);
    }
  }

  port(path: string, value: unknown, named: boolean): PortRef | undefined {
    if (isPortNumber(value)) return value;
    if (named && typeof value === 'string' && PORT_NAME.test(value)) return value;
    this.bad(path, value, named ? 'must be a port number 1-65535 or the name of a workload port (lowercase, at most 15 characters)' : 'must be a port number 1-65535');
    return undefined;
  }

  host(path: string, value: unknown): string | undefined {
    if (value === undefined) return DEFAULT_PROBE_HOST;
    if (typeof value === 'string' && HOST.test(value)) return value.replace(/^\[(.*)\]$/, '$1');
    this.bad(path, value, 'must be an IP address or a host name');
    return undefined;
  }
}

function parseHandler(c: Checker, kind: (typeof HANDLERS)[number], at: string, raw: unknown, source: ProbeSource): ProbeHandler | undefined {
  if (!isObject(raw)) {
    c.bad(at, raw, 'must be an object');
    return undefined;
  }
  const before = c.problems.length;
  c.unknownKeys(at, raw, HANDLER_KEYS[kind]);
  let handler: ProbeHandler | undefined;
  switch (kind) {
    case 'httpGet': {
      const port = c.port(`${at}.port`, raw.port, true);
      const host = c.host(`${at}.host`, raw.host);
      let path = '/';
      if (raw.path !== undefined) {
        if (typeof raw.path === 'string' && raw.path.startsWith('/') && !/[\s#]/.test(raw.path)) path = raw.path;
        else c.bad(`${at}.path`, raw.path, 'must start with "/" and hold no spaces or "#", such as /healthz');
        if (source === 'cluster' && path.length > CLUSTER_PROBE_LIMITS.pathChars) c.bad(`${at}.path`, raw.path, `must be at most ${CLUSTER_PROBE_LIMITS.pathChars} characters for a probe from the cluster`);
      }
      const scheme = raw.scheme ?? 'HTTP';
      if (scheme !== 'HTTP' && scheme !== 'HTTPS') c.bad(`${at}.scheme`, raw.scheme, 'must be HTTP or HTTPS');
      const headers: Array<{ name: string; value: string }> = [];
      if (raw.httpHeaders !== undefined) {
        if (!Array.isArray(raw.httpHeaders)) c.bad(`${at}.httpHeaders`, raw.httpHeaders, 'must be a list of {"name": ..., "value": ...}');
        else if (source === 'cluster' && raw.httpHeaders.length > CLUSTER_PROBE_LIMITS.headers) c.bad(`${at}.httpHeaders`, `${raw.httpHeaders.length} headers`, `a probe from the cluster may set at most ${CLUSTER_PROBE_LIMITS.headers}`);
        else {
          raw.httpHeaders.forEach((header: unknown, i) => {
            const hp = `${at}.httpHeaders[${i}]`;
            if (!isObject(header)) return c.bad(hp, header, 'must be {"name": ..., "value": ...}');
            c.unknownKeys(hp, header, ['name', 'value']);
            if (typeof header.name !== 'string' || !HEADER_NAME.test(header.name)) c.bad(`${hp}.name`, header.name, 'must be an HTTP header name');
            else if (source === 'cluster' && CLUSTER_REFUSED_HEADERS.has(header.name.toLowerCase())) c.bad(`${hp}.name`, header.name, 'describes the connection or the message framing (hop-by-hop or length headers), which a probe from the cluster may not set');
            if (typeof header.value !== 'string' || /[\r\n\0]/.test(header.value)) c.bad(`${hp}.value`, header.value, 'must be a string without line breaks');
            else if (source === 'cluster' && header.value.length > CLUSTER_PROBE_LIMITS.headerValueChars) c.bad(`${hp}.value`, header.value, `must be at most ${CLUSTER_PROBE_LIMITS.headerValueChars} characters for a probe from the cluster`);
            else if (typeof header.name === 'string') headers.push({ name: header.name, value: header.value });
          });
        }
      }
      if (port !== undefined && host !== undefined) handler = { kind, scheme: scheme as 'HTTP' | 'HTTPS', host, port, path, headers };
      break;
    }
    case 'tcpSocket': {
      const port = c.port(`${at}.port`, raw.port, true);
      const host = c.host(`${at}.host`, raw.host);
      if (port !== undefined && host !== undefined) handler = { kind, host, port };
      break;
    }
    case 'grpc': {
      // Kubernetes allows only a number here (no named ports) and always probes the Pod IP.
      const port = c.port(`${at}.port`, raw.port, false) as number | undefined;
      let service = '';
      if (raw.service !== undefined) {
        if (typeof raw.service === 'string') service = raw.service;
        else c.bad(`${at}.service`, raw.service, 'must be a string (the service name sent in HealthCheckRequest)');
      }
      if (port !== undefined) handler = { kind, host: DEFAULT_PROBE_HOST, port, service };
      break;
    }
    case 'exec': {
      const command = raw.command;
      if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string') || command[0] === '') {
        c.bad(`${at}.command`, command, 'must be a non-empty list of strings, the program first (no shell: use ["sh", "-c", "..."] for one)');
      } else if (command.some((a: string) => a.includes('\0'))) {
        c.bad(`${at}.command`, command, 'must not contain NUL characters');
      } else {
        handler = { kind, command: [...(command as string[])] };
      }
      break;
    }
  }
  return c.problems.length === before ? handler : undefined;
}

function parseOne(c: Checker, raw: unknown, at: string, source: ProbeSource): Probe | undefined {
  if (!isObject(raw)) {
    c.bad(at, raw, 'must be an object with one of httpGet, tcpSocket, grpc, exec');
    return undefined;
  }
  const before = c.problems.length;
  c.unknownKeys(at, raw, PROBE_KEYS);
  let name = at;
  if (raw.name !== undefined) {
    if (typeof raw.name === 'string' && PROBE_NAME.test(raw.name)) name = raw.name;
    else c.bad(`${at}.name`, raw.name, 'must be 1-63 letters, digits, ".", "_" or "-", starting and ending with a letter or digit');
  }
  const present = HANDLERS.filter((k) => raw[k] !== undefined);
  let handler: ProbeHandler | undefined;
  if (present.length !== 1) {
    c.problems.push(`${at}: ${present.length ? `has ${present.join(' and ')}` : 'has no handler'}; needs exactly one of ${HANDLERS.join(', ')}`);
  } else {
    handler = parseHandler(c, present[0]!, `${at}.${present[0]}`, raw[present[0]!], source);
  }
  const timing = { ...PROBE_DEFAULTS } as Record<(typeof TIMING)[number], number>;
  for (const key of TIMING) {
    const value = raw[key];
    if (value === undefined) continue;
    const min = key === 'initialDelaySeconds' ? 0 : 1;
    const clusterMax = source === 'cluster' ? CLUSTER_PROBE_LIMITS.seconds[key] : undefined;
    const max = clusterMax ?? MAX_SECONDS;
    if (Number.isInteger(value) && (value as number) >= min && (value as number) <= max) timing[key] = value as number;
    else c.bad(`${at}.${key}`, value, `must be a whole number from ${min} to ${max}${clusterMax ? ' for a probe from the cluster' : ''}`);
  }
  if (c.problems.length !== before || !handler) return undefined;
  return { name, source, handler, ...timing };
}

/**
 * Parses a probe list. `at` is where the list was written (`probes.workload`,
 * `spec.probes`); every problem names the field path under it, the value and what is
 * allowed. Probes with problems are left out of `probes`, so one bad probe from the
 * cluster does not take the good ones with it.
 */
export function parseProbeList(raw: unknown, at: string, source: ProbeSource): { probes: Probe[]; problems: string[] } {
  const c = new Checker();
  if (!Array.isArray(raw)) {
    c.bad(at, raw, 'must be a list of probes with Kubernetes probe fields (httpGet, tcpSocket, grpc or exec, periodSeconds, ...)');
    return { probes: [], problems: c.problems };
  }
  if (source === 'cluster' && raw.length > CLUSTER_PROBE_LIMITS.probes) {
    c.bad(at, `${raw.length} probes`, `the cluster may give a VM at most ${CLUSTER_PROBE_LIMITS.probes}; none of them is run`);
    return { probes: [], problems: c.problems };
  }
  const probes: Probe[] = [];
  const seen = new Set<string>();
  raw.forEach((entry, i) => {
    const probe = parseOne(c, entry, `${at}[${i}]`, source);
    if (!probe) return;
    if (seen.has(probe.name)) {
      c.bad(`${at}[${i}].name`, probe.name, 'must be unique in the list');
      return;
    }
    seen.add(probe.name);
    probes.push(probe);
  });
  return { probes, problems: c.problems };
}

/** Every problem of a probe list, each naming its field path under `at`; empty when valid. */
export function probeListProblems(raw: unknown, at: string): string[] {
  return parseProbeList(raw, at, 'local').problems;
}

/** How a probe is shown: `GET http://127.0.0.1:8080/healthz`, `TCP 127.0.0.1:5432`, ... (named ports as given). */
export function describeHandler(handler: ProbeHandler, port: PortRef | undefined = 'port' in handler ? handler.port : undefined): string {
  switch (handler.kind) {
    case 'httpGet':
      return `GET ${handler.scheme.toLowerCase()}://${hostPort(handler.host, port!)}${handler.path}`;
    case 'tcpSocket':
      return `TCP ${hostPort(handler.host, port!)}`;
    case 'grpc':
      return `gRPC health ${hostPort(handler.host, handler.port)}${handler.service ? ` service "${handler.service}"` : ''}`;
    case 'exec':
      return `exec ${JSON.stringify(handler.command)}`;
  }
}

export function hostPort(host: string, port: PortRef): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
