/**
 * Parsers for the /proc files `check` reads. Pure: the files are read in effects.ts.
 */

/** Capability bits (linux/capability.h) the harness needs. */
export const CAPABILITIES = { CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7, CAP_NET_ADMIN: 12 } as const;
export type CapabilityName = keyof typeof CAPABILITIES;

export interface ProcessCredentials {
  /** Effective uid. */
  uid: number;
  /** Effective capability set. */
  capEff: bigint;
}

/** Effective uid and capabilities from /proc/<pid>/status. */
export function parseProcStatus(text: string): ProcessCredentials {
  const field = (name: string): string | undefined => new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(text)?.[1];
  const uids = field('Uid')?.split(/\s+/);
  const capEff = field('CapEff');
  if (!uids || uids.length < 2 || !capEff || !/^[0-9a-fA-F]+$/.test(capEff.trim())) throw new Error('unexpected /proc/self/status format (no Uid or CapEff line)');
  return { uid: Number(uids[1]), capEff: BigInt(`0x${capEff.trim()}`) };
}

export function hasCapability(creds: ProcessCredentials, name: CapabilityName): boolean {
  return (creds.capEff >> BigInt(CAPABILITIES[name])) & 1n ? true : false;
}

export interface TcpListener {
  /** Printable local address, such as 0.0.0.0 or ::1. */
  address: string;
  port: number;
  uid: number;
  inode: number;
}

const TCP_LISTEN = '0A';

/** IPv4 in /proc/net/tcp is one 32-bit word in host (little-endian) order. */
function ipv4FromHex(hex: string): string {
  const bytes = Buffer.from(hex, 'hex');
  return [bytes[3], bytes[2], bytes[1], bytes[0]].join('.');
}

/** IPv6 in /proc/net/tcp6 is four 32-bit words, each in host (little-endian) order. */
function ipv6FromHex(hex: string): string {
  const groups: string[] = [];
  for (let word = 0; word < 4; word++) {
    const bytes = Buffer.from(hex.slice(word * 8, word * 8 + 8), 'hex').reverse();
    groups.push(bytes.readUInt16BE(0).toString(16), bytes.readUInt16BE(2).toString(16));
  }
  // The WHATWG URL parser prints IPv6 in its canonical compressed form (RFC 5952).
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** The listening sockets of /proc/net/tcp (family 4) or /proc/net/tcp6 (family 6). */
export function parseProcNetTcp(text: string, family: 4 | 6): TcpListener[] {
  const listeners: TcpListener[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || fields[3] !== TCP_LISTEN) continue;
    const [addressHex, portHex] = fields[1]!.split(':') as [string, string];
    listeners.push({
      address: family === 4 ? ipv4FromHex(addressHex) : ipv6FromHex(addressHex),
      port: parseInt(portHex, 16),
      uid: Number(fields[7]),
      inode: Number(fields[9]),
    });
  }
  return listeners;
}

/** The parent pid and command name from /proc/<pid>/stat ("pid (comm) state ppid ..."; comm may hold spaces and parentheses). */
export function parseProcStat(text: string): { comm: string; ppid: number } | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const rest = text.slice(close + 2).split(' ');
  const ppid = Number(rest[1]);
  return Number.isInteger(ppid) ? { comm: text.slice(open + 1, close), ppid } : undefined;
}

export interface Route {
  /** The gateway, when the route is not on-link. */
  via?: string;
  dev?: string;
  src?: string;
}

/** The first line of `ip route get ADDRESS`: "10.1.2.3 via 10.0.0.1 dev eth0 src 10.0.0.5 uid 0". */
export function parseRouteGet(text: string): Route | undefined {
  const line = text.split('\n').find((l) => l.trim() !== '');
  if (!line) return undefined;
  const words = line.trim().split(/\s+/);
  const after = (key: string): string | undefined => {
    const i = words.indexOf(key);
    return i >= 0 ? words[i + 1] : undefined;
  };
  const route: Route = {};
  const via = after('via');
  const dev = after('dev');
  const src = after('src');
  if (via) route.via = via;
  if (dev) route.dev = dev;
  if (src) route.src = src;
  return route;
}
