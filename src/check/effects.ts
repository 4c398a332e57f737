/**
 * Everything `check` does to the outside world, behind one interface: the checks are
 * given an implementation, so a test can hand them a runner acting on its own network
 * namespace or a resolver of its own, and production gets systemEffects().
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { fetchAdminStatus } from '../admin/client.ts';
import type { AdminStatus } from '../admin/server.ts';
import { fetchX509SvidsOnce, type X509Svid } from '../identity/workload-api-client.ts';
import { execRunner, type CommandRunner } from '../iptables/runner.ts';
import { readInstalledProxy, type InstalledProxy } from '../proxy/install-record.ts';
import { probeBinary, type BinaryProbe } from '../supervisor/binary-probe.ts';
import { findExecutable } from '../supervisor/which.ts';
import { resolveGroup, resolveUser, type ResolvedGroup, type ResolvedUser } from '../util/users.ts';
import { parseProcNetTcp, parseProcStat, type TcpListener } from './proc.ts';

export interface SocketOwner {
  pid: number;
  /** Command name (/proc/<pid>/comm). */
  command: string;
  /** The owner's parent, grandparent, ... up to init, for "started by the harness". */
  ancestors: number[];
}

export interface OwnedListener extends TcpListener {
  /** Processes holding the socket; empty when none is visible (another PID namespace). */
  owners: SocketOwner[];
}

export interface CheckEffects {
  now(): Date;
  /** Reads a text file; throws the errno error. */
  readText(path: string): string;
  resolveUser(user: string): Promise<ResolvedUser>;
  resolveGroup(group: string): Promise<ResolvedGroup>;
  /** Runs iptables, ip and unshare. */
  runner: CommandRunner;
  probeBinary(configured: string, timeoutMs: number): Promise<BinaryProbe>;
  /** The executable `configured` names and what `mesh-harness proxy install` recorded for it. */
  installedProxy(configured: string): Promise<{ path?: string; installed: InstalledProxy }>;
  /** The addresses a host name resolves to, as every program on the host resolves it (NSS: /etc/hosts, DNS). */
  lookup(host: string, timeoutMs: number): Promise<string[]>;
  /** Opens a TCP connection and closes it again. */
  connect(address: string, port: number, timeoutMs: number): Promise<void>;
  /** One X.509 SVID set from the Workload API, asked with effective group `gid` when given. */
  fetchSvids(socketPath: string, options: { gid?: number; timeoutMs: number }): Promise<X509Svid[]>;
  daemonStatus(host: string, port: number, timeoutMs: number): Promise<AdminStatus>;
  /** Listening TCP sockets on `ports` (IPv4 and IPv6) with the processes holding them. */
  listeners(ports: readonly number[]): OwnedListener[];
}

export interface SystemEffectsOptions {
  env: NodeJS.ProcessEnv;
}

export function systemEffects(options: SystemEffectsOptions): CheckEffects {
  const env = options.env;
  const runner = execRunner({ env: { PATH: env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' } });
  return {
    now: () => new Date(),
    readText: (path) => readFileSync(path, 'utf8'),
    resolveUser,
    resolveGroup,
    runner,
    probeBinary: (configured, timeoutMs) => probeBinary(configured, env.PATH, timeoutMs),
    async installedProxy(configured) {
      const path = findExecutable(configured, env.PATH);
      return path ? { path, installed: await readInstalledProxy(path) } : { installed: { state: 'unrecorded' } };
    },
    lookup: (host, timeoutMs) => lookup(runner, host, timeoutMs),
    connect,
    async fetchSvids(socketPath, { gid, timeoutMs }) {
      // SPIRE's unix attestor reads the caller's effective gid from /proc/<pid>/status after
      // the connect, so the group is changed for good (the command exits afterwards).
      if (gid !== undefined && process.getegid && process.setegid && process.getegid() !== gid) process.setegid(gid);
      return fetchX509SvidsOnce(socketPath, timeoutMs);
    },
    daemonStatus: fetchAdminStatus,
    listeners: (ports) => procListeners(ports),
  };
}

/**
 * getaddrinfo through NSS, in a child process: Node's own dns.lookup runs getaddrinfo on
 * the libuv thread pool, where a black-holed resolver blocks it for minutes and cannot be
 * cancelled; even process.exit waits for it. A child is killed at the deadline.
 */
async function lookup(runner: CommandRunner, host: string, timeoutMs: number): Promise<string[]> {
  const result = await runner.run(['getent', 'ahosts', host], { timeoutMs });
  if (result.exitCode === 124) throw Object.assign(new Error(`resolving ${host}: no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' });
  // getent exits 2 when getaddrinfo found nothing: no such name, or no DNS server could say.
  if (result.exitCode === 2) throw Object.assign(new Error(`${host} does not resolve`), { code: 'ENOTFOUND' });
  if (result.exitCode !== 0) throw new Error(`getent ahosts ${host} exited ${result.exitCode}: ${result.stderr.trim()}`);
  return [...new Set(result.stdout.split('\n').map((line) => line.split(/\s+/)[0]!).filter(Boolean))];
}

function connect(address: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: address, port, timeout: timeoutMs });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    });
    socket.once('error', reject);
  });
}

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Reads /proc synchronously on purpose: the files are tiny, and the libuv thread pool may
 * be busy with DNS lookups that black-hole, which would stall asynchronous reads.
 */
function procListeners(ports: readonly number[]): OwnedListener[] {
  const wanted = new Set(ports);
  const found: TcpListener[] = [];
  for (const [file, family] of [['/proc/net/tcp', 4], ['/proc/net/tcp6', 6]] as const) {
    const text = readOr(file);
    if (text) found.push(...parseProcNetTcp(text, family).filter((l) => wanted.has(l.port)));
  }
  if (found.length === 0) return [];
  const byInode = new Map<number, number[]>(found.map((l) => [l.inode, []]));
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const match = /^socket:\[(\d+)\]$/.exec(target);
      const pids = match ? byInode.get(Number(match[1])) : undefined;
      if (pids && !pids.includes(Number(entry))) pids.push(Number(entry));
    }
  }
  return found.map((listener) => ({ ...listener, owners: (byInode.get(listener.inode) ?? []).map(owner) }));
}

function owner(pid: number): SocketOwner {
  const command = readOr(`/proc/${pid}/comm`)?.trim() ?? '?';
  const ancestors: number[] = [];
  let current = pid;
  // Bounded: a pid namespace is at most a few dozen levels deep in practice.
  for (let i = 0; i < 64; i++) {
    const stat = readOr(`/proc/${current}/stat`);
    const ppid = stat ? parseProcStat(stat)?.ppid : undefined;
    if (!ppid) break;
    ancestors.push(ppid);
    current = ppid;
  }
  return { pid, command, ancestors };
}
