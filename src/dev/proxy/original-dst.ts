/**
 * Where a redirected connection was originally headed (SO_ORIGINAL_DST), so the
 * development proxy can show that iptables sent it there. Node has no API for it; libc's
 * getsockopt is called through koffi. Anything unexpected (koffi missing from an
 * installed package, no conntrack entry, a socket without an fd) means "unknown", never
 * an error: this is a diagnostic, not routing.
 */
import type { Socket } from 'node:net';

const SOL_IP = 0;
const SOL_IPV6 = 41;
/** SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST share the number. */
const SO_ORIGINAL_DST = 80;

type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: number[]) => number;

let getsockopt: GetSockOpt | null | undefined;

async function load(): Promise<GetSockOpt | null> {
  if (getsockopt !== undefined) return getsockopt;
  try {
    const koffi = (await import('koffi')).default;
    const libc = koffi.load('libc.so.6');
    getsockopt = libc.func('int getsockopt(int fd, int level, int name, _Inout_ uint8_t *value, _Inout_ uint32_t *length)') as GetSockOpt;
  } catch {
    getsockopt = null;
  }
  return getsockopt;
}

function fdOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** `ip:port` (IPv6 in brackets) the client connected to before a REDIRECT, or undefined. */
export async function originalDestination(socket: Socket): Promise<string | undefined> {
  const call = await load();
  const fd = fdOf(socket);
  if (!call || fd === undefined) return undefined;
  const v6 = socket.localFamily === 'IPv6' && !socket.localAddress?.startsWith('::ffff:');
  const value = Buffer.alloc(v6 ? 28 : 16);
  try {
    if (call(fd, v6 ? SOL_IPV6 : SOL_IP, SO_ORIGINAL_DST, value, [value.length]) !== 0) return undefined;
  } catch {
    return undefined;
  }
  const port = value.readUInt16BE(2);
  if (!v6) return `${value[4]}.${value[5]}.${value[6]}.${value[7]}:${port}`;
  const groups = Array.from({ length: 8 }, (_, i) => value.readUInt16BE(8 + i * 2).toString(16));
  return `[${groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')}]:${port}`;
}
