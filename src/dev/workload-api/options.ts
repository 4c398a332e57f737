/**
 * Flags and environment of the development Workload API server program. Flags win over
 * the environment (MESH_DEV_WORKLOAD_API_<FLAG>), so the demo can set everything in env.
 */
import { parseArgs } from 'node:util';
import { parseWorkloadApiAddress } from '../../identity/workload-api-client.ts';
import { formatDuration, parseDuration } from '../../util/duration.ts';

export interface DevServerOptions {
  socketPath: string;
  trustDomain: string;
  spiffeIds: string[];
  ttlMs: number;
  rotateEveryMs?: number;
  /** Where to write the trust anchor PEM that SVIDs chain to. */
  trustAnchorsOut?: string;
  /** An existing CA to sign with (for example the Linkerd trust anchor); a throwaway one otherwise. */
  caCertFile?: string;
  caKeyFile?: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export const DEV_SERVER_USAGE = `usage: dev-workload-api --socket PATH --spiffe-id ID [--spiffe-id ID ...] [options]

Serves the SPIFFE Workload API with real X.509-SVIDs from a development CA (never for production).

  --socket PATH             Unix socket to serve on (unix:///path or /path)
  --spiffe-id ID            SPIFFE ID given to every caller; repeat for more
  --trust-domain NAME       default root.linkerd.cluster.local; every ID must be in it
  --ttl DURATION            SVID lifetime, default 1m
  --rotate-every DURATION   re-issue interval, default half the TTL
  --trust-anchors-out PATH  write the trust anchor PEM there (give it to the harness and proxy)
  --ca-cert PATH --ca-key PATH  sign with this CA instead of a throwaway one
  --log-level LEVEL         debug, info, warn or error (default info)

Each flag can also come from MESH_DEV_WORKLOAD_API_<FLAG> (SPIFFE IDs comma-separated).`;

/** A usage problem: exit 64 with this message. */
export class DevServerUsageError extends Error {}

const FLAGS = {
  socket: { type: 'string' },
  'spiffe-id': { type: 'string', multiple: true },
  'trust-domain': { type: 'string' },
  ttl: { type: 'string' },
  'rotate-every': { type: 'string' },
  'trust-anchors-out': { type: 'string' },
  'ca-cert': { type: 'string' },
  'ca-key': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function envName(flag: string): string {
  return `MESH_DEV_WORKLOAD_API_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** Returns undefined for --help. Throws DevServerUsageError naming the bad value. */
export function parseDevServerArgs(argv: string[], env: NodeJS.ProcessEnv): DevServerOptions | undefined {
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new DevServerUsageError((err as Error).message);
  }
  if (values['help']) return undefined;
  const get = (flag: string): string | undefined => (values[flag] as string | undefined) ?? (env[envName(flag)] || undefined);

  const socket = get('socket');
  if (!socket) throw new DevServerUsageError(`--socket is required (or ${envName('socket')})`);
  let socketPath: string;
  try {
    socketPath = parseWorkloadApiAddress(socket);
  } catch (err) {
    throw new DevServerUsageError(`--socket: ${(err as Error).message}`);
  }

  const trustDomain = get('trust-domain') ?? 'root.linkerd.cluster.local';
  if (!/^[a-z0-9._-]+$/.test(trustDomain)) throw new DevServerUsageError(`--trust-domain "${trustDomain}" is not a trust domain name (lower-case letters, digits, ".", "-", "_")`);
  const spiffeIds = (values['spiffe-id'] as string[] | undefined) ?? (env[envName('spiffe-id')] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (spiffeIds.length === 0) throw new DevServerUsageError(`--spiffe-id is required (or ${envName('spiffe-id')}, comma-separated)`);
  for (const id of spiffeIds) {
    if (!id.startsWith(`spiffe://${trustDomain}/`)) throw new DevServerUsageError(`--spiffe-id "${id}" is not in trust domain ${trustDomain}; use spiffe://${trustDomain}/<path>`);
  }

  const duration = (flag: string, fallback?: number): number | undefined => {
    const text = get(flag);
    if (text === undefined) return fallback;
    const ms = parseDuration(text);
    if (ms === undefined || ms <= 0) throw new DevServerUsageError(`--${flag} "${text}" is not a positive duration such as 30s, 5m or 500ms`);
    return ms;
  };
  const ttlMs = duration('ttl', 60_000)!;
  const rotateEveryMs = duration('rotate-every');
  if (rotateEveryMs !== undefined && rotateEveryMs >= ttlMs) {
    throw new DevServerUsageError(`--rotate-every ${formatDuration(rotateEveryMs)} must be shorter than --ttl ${formatDuration(ttlMs)}, or SVIDs expire before they are replaced`);
  }

  const caCertFile = get('ca-cert');
  const caKeyFile = get('ca-key');
  if (Boolean(caCertFile) !== Boolean(caKeyFile)) throw new DevServerUsageError('--ca-cert and --ca-key go together');

  const logLevel = get('log-level') ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new DevServerUsageError(`--log-level "${logLevel}" must be debug, info, warn or error`);

  const trustAnchorsOut = get('trust-anchors-out');
  return {
    socketPath,
    trustDomain,
    spiffeIds,
    ttlMs,
    ...(rotateEveryMs !== undefined ? { rotateEveryMs } : {}),
    ...(trustAnchorsOut ? { trustAnchorsOut } : {}),
    ...(caCertFile && caKeyFile ? { caCertFile, caKeyFile } : {}),
    logLevel: logLevel as DevServerOptions['logLevel'],
  };
}
