/**
 * sd_notify from the harness's own process.
 *
 * systemd attributes a notification to a unit by the sender's PID (SCM_CREDENTIALS). With
 * the default NotifyAccess=main only the main PID is heard, and a helper such as
 * systemd-notify is a different PID that may have exited before systemd looks it up (the
 * well-known lost-READY race). Node's dgram module cannot send on AF_UNIX datagram
 * sockets, so the datagram is sent with libc's socket()/sendto() through koffi (an FFI
 * that ships prebuilt binaries for amd64 and arm64): the sender is this process.
 */
import type { Logger } from '../log/logger.ts';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
const SUN_PATH_MAX = 108;

export interface Notifier {
  /** Whether a notify socket was given (running under systemd Type=notify). */
  readonly enabled: boolean;
  /** Watchdog interval to send WATCHDOG=1 at (half of WATCHDOG_USEC), when the watchdog is on. */
  readonly watchdogIntervalMs: number | undefined;
  /** Sends `KEY=value` lines; returns false when the datagram could not be sent. */
  notify(fields: Record<string, string | number>): boolean;
  close(): void;
}

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number): number;
  close(fd: number): number;
  errno(): number;
}

/** sockaddr_un for a path, or for an abstract name when it starts with "@". */
export function socketAddress(socketPath: string): { address: Buffer; length: number } {
  const abstract = socketPath.startsWith('@');
  const name = Buffer.from(abstract ? `\0${socketPath.slice(1)}` : socketPath);
  if (!abstract && !socketPath.startsWith('/')) throw new Error(`NOTIFY_SOCKET=${socketPath} is neither an absolute path nor an abstract socket name`);
  if (name.length >= SUN_PATH_MAX) throw new Error(`NOTIFY_SOCKET=${socketPath} is longer than a Unix socket path may be`);
  const address = Buffer.alloc(2 + SUN_PATH_MAX);
  address.writeUInt16LE(AF_UNIX, 0);
  name.copy(address, 2);
  // Path sockets include the terminating NUL in the length; abstract names must not.
  return { address, length: 2 + name.length + (abstract ? 0 : 1) };
}

/** KEY=value lines; values may not contain newlines (a STATUS text is folded). */
export function formatNotification(fields: Record<string, string | number>): string {
  return Object.entries(fields)
    .map(([key, value]) => `${key}=${String(value).replace(/\n/g, ' ')}`)
    .join('\n');
}

async function loadLibc(): Promise<Libc> {
  const koffi = (await import('koffi')).default;
  const lib = koffi.load('libc.so.6');
  const errnoLocation = lib.func('int *__errno_location()');
  return {
    socket: lib.func('int socket(int, int, int)'),
    sendto: lib.func('long sendto(int, const void *, size_t, int, const void *, uint32_t)'),
    close: lib.func('int close(int)'),
    errno: () => koffi.decode(errnoLocation(), 'int') as number,
  };
}

const disabled: Notifier = { enabled: false, watchdogIntervalMs: undefined, notify: () => false, close: () => undefined };

/** The notifier for this process: a no-op without NOTIFY_SOCKET. */
export async function createNotifier(env: NodeJS.ProcessEnv, log: Logger): Promise<Notifier> {
  const socketPath = env.NOTIFY_SOCKET;
  if (!socketPath) return disabled;
  const { address, length } = socketAddress(socketPath);
  const libc = await loadLibc();
  const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`cannot create the sd_notify socket (errno ${libc.errno()})`);

  const watchdogUsec = Number(env.WATCHDOG_USEC);
  const watchdogPid = env.WATCHDOG_PID === undefined ? process.pid : Number(env.WATCHDOG_PID);
  const watchdogIntervalMs = Number.isFinite(watchdogUsec) && watchdogUsec > 0 && watchdogPid === process.pid ? Math.max(1, Math.floor(watchdogUsec / 2000)) : undefined;

  let open = true;
  let warned = false;
  return {
    enabled: true,
    watchdogIntervalMs,
    notify(fields) {
      if (!open) return false;
      const payload = Buffer.from(formatNotification(fields));
      const sent = libc.sendto(fd, payload, payload.length, MSG_NOSIGNAL, address, length);
      if (sent < 0) {
        // A full or missing socket must never stall or crash the harness; say so once.
        if (!warned) log.warn({ errno: libc.errno(), socket: socketPath }, 'sd_notify failed; systemd may not see the harness state');
        warned = true;
        return false;
      }
      warned = false;
      return true;
    },
    close() {
      if (open) libc.close(fd);
      open = false;
    },
  };
}
