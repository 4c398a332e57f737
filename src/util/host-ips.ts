/**
 * The host's workload IPs when workload.ips is not configured: the first global address
 * of the interface that holds the default route, one IPv4 and one IPv6 at most (what an
 * ExternalWorkload can hold).
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

function defaultRouteInterface(file: string, isDefault: (fields: string[]) => boolean, ifaceField: number): string | undefined {
  try {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(file.endsWith('ipv6_route') ? 0 : 1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length > ifaceField && isDefault(fields)) return fields[ifaceField];
    }
  } catch {
    // No such table (IPv6 disabled): no default route of that family.
  }
  return undefined;
}

export function detectWorkloadIps(procNet = '/proc/net'): string[] {
  const v4If = defaultRouteInterface(`${procNet}/route`, (f) => f[1] === '00000000' && f[7] === '00000000', 0);
  const v6If = defaultRouteInterface(`${procNet}/ipv6_route`, (f) => /^0{32}$/.test(f[0] ?? '') && f[1] === '00' && f[9] !== 'lo', 9);
  const interfaces = networkInterfaces();
  const v4 = v4If ? interfaces[v4If]?.find((a) => a.family === 'IPv4' && !a.internal)?.address : undefined;
  const v6 = v6If ? interfaces[v6If]?.find((a) => a.family === 'IPv6' && !a.internal && !a.address.startsWith('fe80'))?.address : undefined;
  return [v4, v6].filter((ip): ip is string => Boolean(ip));
}
