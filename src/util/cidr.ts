/**
 * Subnets in the exact form iptables-save prints them: host bits cleared, a prefix length
 * always present, IPv6 compressed the way glibc's inet_ntop does. Rendering in that form is
 * what lets observed rules compare equal to desired ones.
 */
import { isIP } from 'node:net';

export type Family = 'ipv4' | 'ipv6';

/** A parsed subnet: what configuration holds, and what the rule renderer reads. */
export interface Cidr {
  family: Family;
  /** Such as "10.0.0.0/8" or "fd00::/8": host bits cleared, as iptables-save prints it. */
  text: string;
}

/** An IPv4 or IPv6 CIDR ("10.0.0.0/8", "fd00::/8") or a bare address, split and checked. */
function splitCidr(value: string): { address: string; prefix: number; family: 4 | 6 } | undefined {
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

function ipv4Bytes(address: string): number[] {
  return address.split('.').map(Number);
}

function ipv6Bytes(address: string): number[] {
  let text = address.toLowerCase();
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = ipv4Bytes(v4[1]!) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups].map((g) => parseInt(g, 16));
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

function mask(bytes: number[], prefix: number): number[] {
  return bytes.map((byte, i) => {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    return byte & ((0xff << (8 - bits)) & 0xff);
  });
}

/** inet_ntop(AF_INET6): longest run of two or more zero groups becomes "::" (first on ties). */
function formatIpv6(bytes: number[]): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestLength < 2) bestStart = -1;
  // glibc prints IPv4-compatible and IPv4-mapped addresses with a dotted tail.
  const dottedTail = bestStart === 0 && (bestLength === 6 || (bestLength === 5 && words[5] === 0xffff));
  const parts: string[] = [];
  let i = 0;
  while (i < 8) {
    if (i === bestStart) {
      parts.push(i === 0 ? ':' : '');
      i += bestLength;
      if (i === 8) parts.push('');
      continue;
    }
    if (dottedTail && i === 6) {
      parts.push(bytes.slice(12).join('.'));
      break;
    }
    parts.push(words[i]!.toString(16));
    i++;
  }
  return parts.join(':');
}

/** Canonical form of a configured subnet or bare address; undefined when it is not one. */
export function parseCidr(value: string): Cidr | undefined {
  const parsed = splitCidr(value);
  if (!parsed) return undefined;
  if (parsed.family === 4) {
    return { family: 'ipv4', text: `${mask(ipv4Bytes(parsed.address), parsed.prefix).join('.')}/${parsed.prefix}` };
  }
  return { family: 'ipv6', text: `${formatIpv6(mask(ipv6Bytes(parsed.address), parsed.prefix))}/${parsed.prefix}` };
}

/** The address's bytes (4 or 16); an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as its IPv4 bytes. */
function addressBytes(address: string): number[] | undefined {
  const family = isIP(address);
  if (family === 4) return ipv4Bytes(address);
  if (family !== 6) return undefined;
  const bytes = ipv6Bytes(address);
  const mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? bytes.slice(12) : bytes;
}

/**
 * Whether `address` lies in `cidr`. An IPv4-mapped IPv6 address is judged as the IPv4
 * address it reaches (the kernel connects ::ffff:169.254.169.254 to 169.254.169.254).
 * Anything that is not an IP address is in no subnet.
 */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const bytes = addressBytes(address);
  const subnet = splitCidr(cidr.text);
  if (!bytes || !subnet) return false;
  const base = subnet.family === 4 ? ipv4Bytes(subnet.address) : ipv6Bytes(subnet.address);
  if (bytes.length !== base.length) return false;
  const masked = mask(bytes, subnet.prefix);
  return masked.every((byte, i) => byte === base[i]);
}
