/**
 * The Workload API address as configured (`identity.workloadApiSocket`): a Unix socket,
 * `unix:///path`, `unix:/path` or an absolute path. Dependency-free, so the configuration
 * loader checks it at load and the identity component uses the same rules.
 */
import { isAbsolute } from 'node:path';

/** Longest Unix socket path Linux accepts (sun_path is 108 bytes including the NUL). */
const MAX_SOCKET_PATH = 107;

/** Turns a Workload API address into the socket path; throws an Error naming the value and the fix. */
export function parseWorkloadApiAddress(address: string): string {
  const value = address.trim();
  const fix = 'use unix:///path/to/api.sock or an absolute path';
  if (value === '') throw new Error(`Workload API address is empty; ${fix}`);
  let path: string;
  if (value.startsWith('unix://')) {
    path = value.slice('unix://'.length);
    if (!path.startsWith('/')) throw new Error(`Workload API address "${address}" names a host or a relative path after unix://; ${fix}`);
  } else if (value.startsWith('unix:')) {
    path = value.slice('unix:'.length);
    if (!path.startsWith('/')) throw new Error(`Workload API address "${address}" is a relative socket path; ${fix}`);
  } else if (/^[a-z][a-z0-9+.-]*:/i.test(value)) {
    throw new Error(`Workload API address "${address}" is not a Unix socket; mesh-harness talks to the SPIRE agent over its Unix socket only: ${fix}`);
  } else {
    path = value;
    if (!isAbsolute(path)) throw new Error(`Workload API address "${address}" is a relative path; ${fix}`);
  }
  if (path.includes('?') || path.includes('#')) throw new Error(`Workload API address "${address}" has a query or fragment; ${fix}`);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new Error(`Workload API socket path "${path}" is ${Buffer.byteLength(path)} bytes; Unix sockets allow at most ${MAX_SOCKET_PATH}: use a shorter path`);
  }
  return path;
}

