/**
 * The facts of a workload that are bound to who the machine is, decided by the registrar
 * from what it proved (the SPIFFE ID and DNS names of its X.509 SVID, the address its
 * connection comes from) and from the ExternalGroup, never from the hello's word alone:
 * the ExternalWorkload's name, its server name and its IPs. The hello says what the
 * harness already gave its proxy; when that differs from what the registrar decides the
 * machine is refused with the setting to change, because a proxy running under a name or
 * server name the cluster does not hold would fail in ways much harder to trace.
 *
 * Pure functions: the server gathers the inputs, the controller then checks what needs
 * the other workloads (a name held by another machine, the count per identity).
 */
import { BlockList, isIP } from 'node:net';
import type { Hello } from '../protocol/registration.ts';
import { workloadName } from '../protocol/workload-name.ts';
import { parseCidr } from '../util/cidr.ts';
import { isDnsName, quote } from './message-limits.ts';
import type { ExternalGroup } from './store.ts';

/** What TLS and the socket proved about the machine. */
export interface Peer {
  spiffeId: string;
  /** DNS SANs of its X.509 SVID (issued by the trust domain's CA, so trusted). */
  dnsNames: string[];
  /** The connection's source address, as the registrar sees it. */
  address: string;
}

export interface Denial {
  reason: 'NameMismatch' | 'ServerNameMismatch' | 'NoServerName' | 'IPNotAllowed';
  message: string;
}

export type Decision<T> = { ok: true; value: T } | ({ ok: false } & Denial);

/** A derived name ends in "-" and 10 hex digits (workloadName()); custom names may not, so they can never take a derived one. */
const DERIVED_SHAPE = /-[0-9a-f]{10}$/;

/**
 * The ExternalWorkload name: the derived one, or the harness's own where the group allows
 * custom names. `groupExists` answers whether an ExternalGroup of that name exists in the
 * namespace (custom names of a group G are G-*, unless a longer group name claims them).
 */
export function decideName(hello: Hello, group: ExternalGroup, spiffeId: string, groupExists: (name: string) => boolean): Decision<string> {
  const namespace = group.metadata.namespace;
  const groupName = group.metadata.name;
  const derived = workloadName({ namespace, group: groupName, nodeName: hello.node_name, spiffeId });
  // A harness from before naming was shared sends no name: it gets the derived one.
  const asked = hello.workload_name || derived;
  if (asked === derived) return { ok: true, value: derived };
  const where = `ExternalGroup ${namespace}/${groupName}`;
  const refuse = (why: string, orElse = ''): Decision<string> => ({
    ok: false,
    reason: 'NameMismatch',
    message: `this machine's proxy was given the ExternalWorkload name ${asked} (workload.name), but ${why}; the registrar's name for it is ${derived}: empty workload.name on the machine (the harness then derives ${derived})${orElse}`,
  });
  if (!group.spec.allowCustomNames) return refuse(`${where} does not allow custom names`, ', or set spec.allowCustomNames: true on the group');
  if (!asked.startsWith(`${groupName}-`)) return refuse(`custom names in ${where} must start with "${groupName}-"`);
  if (DERIVED_SHAPE.test(asked)) return refuse(`a custom name may not end like a derived name ("-" and 10 hex digits)`);
  for (let i = asked.indexOf('-', groupName.length + 1); i > 0; i = asked.indexOf('-', i + 1)) {
    const longer = asked.slice(0, i);
    if (groupExists(longer)) return refuse(`names starting with "${longer}-" belong to ExternalGroup ${namespace}/${longer}`);
  }
  return { ok: true, value: asked };
}

/**
 * spec.meshTLS.serverName: the group's spec.template.serverName, else one of the DNS names
 * of the SVID the hello names. The hello's server name is what the proxy presents
 * (identity.serverName); an empty one (a harness from before it was sent) takes the
 * group's, and without one is refused: a name picked from the SVID may not be the one the
 * proxy presents, and a server name the proxy does not present breaks every connection to it.
 */
export function decideServerName(hello: Hello, group: ExternalGroup, peer: Peer): Decision<string> {
  const where = `ExternalGroup ${group.metadata.namespace}/${group.metadata.name}`;
  const presented = hello.server_name;
  const fromGroup = group.spec.template?.serverName;
  if (fromGroup) {
    if (!presented || presented === fromGroup) return { ok: true, value: fromGroup };
    return { ok: false, reason: 'ServerNameMismatch', message: `this machine's proxy presents the server name ${quote(presented)} (identity.serverName), but ${where} spec.template.serverName is ${quote(fromGroup)}: set identity.serverName to ${fromGroup} on the machine (or change the group's spec.template.serverName)` };
  }
  const names = peer.dnsNames.filter(isDnsName);
  if (names.length === 0) {
    return { ok: false, reason: 'NoServerName', message: `${where} has no spec.template.serverName and the SVID of ${peer.spiffeId} carries no DNS name: set spec.template.serverName on the group${presented ? ` (to ${presented} if that is the name this machine's proxy should present)` : ''}` };
  }
  if (!presented) {
    return { ok: false, reason: 'NoServerName', message: `this machine's hello names no server name (identity.serverName) and ${where} sets no spec.template.serverName: upgrade mesh-harness (it sends identity.serverName), or set spec.template.serverName on the group to the name the machines' proxies present (one of ${JSON.stringify(names)})` };
  }
  if (names.includes(presented)) return { ok: true, value: presented };
  return { ok: false, reason: 'ServerNameMismatch', message: `this machine's proxy presents the server name ${quote(presented)} (identity.serverName), but its SVID's DNS names are ${JSON.stringify(names)} and ${where} sets no spec.template.serverName: set identity.serverName to one of them (or set the group's spec.template.serverName)` };
}

/**
 * The workload IPs: each must be the connection's source address or inside the group's
 * spec.allowedIPs, so a machine can announce neither a cluster Service's address nor
 * another machine's. Entries of allowedIPs that are not CIDRs are ignored (the CRD's
 * pattern is loose; the API server cannot check a CIDR without CEL's isCIDR).
 */
export function decideIps(hello: Hello, group: ExternalGroup, peer: Peer): Decision<string[]> {
  const allowed = allowedIps(group);
  const source = canonicalIp(peer.address);
  const outside = (hello.workload_ips ?? []).filter((ip) => canonicalIp(ip) !== source && !allowed.list.check(ip, isIP(ip) === 4 ? 'ipv4' : 'ipv6'));
  if (outside.length === 0) return { ok: true, value: [...(hello.workload_ips ?? [])] };
  const where = `ExternalGroup ${group.metadata.namespace}/${group.metadata.name}`;
  const ips = outside.join(' and ');
  return {
    ok: false,
    reason: 'IPNotAllowed',
    message: `workload IP ${ips} is neither the address this machine connects from (${peer.address || 'unknown'}) nor inside ${where} spec.allowedIPs ${JSON.stringify(allowed.cidrs)}: set workload.ips on the machine to the address the registrar sees, or add a CIDR covering ${ips} to the group's spec.allowedIPs (needed when the machines reach the registrar through NAT)`,
  };
}

/** One BlockList per version of a group (the cache replaces the object on every change): a reconnect storm builds none. */
const allowedByGroup = new WeakMap<ExternalGroup, { list: BlockList; cidrs: string[] }>();

function allowedIps(group: ExternalGroup): { list: BlockList; cidrs: string[] } {
  let allowed = allowedByGroup.get(group);
  if (allowed) return allowed;
  allowed = { list: new BlockList(), cidrs: [] };
  for (const entry of group.spec.allowedIPs ?? []) {
    const cidr = entry.includes('/') ? parseCidr(entry) : undefined;
    if (!cidr) continue;
    const [network, prefix] = cidr.text.split('/');
    allowed.list.addSubnet(network!, Number(prefix), cidr.family);
    allowed.cidrs.push(cidr.text);
  }
  allowedByGroup.set(group, allowed);
  return allowed;
}

/** An address in one spelling (IPv4-mapped IPv6 unwrapped, IPv6 compressed), '' when it is none. */
function canonicalIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return parseCidr(mapped ? mapped[1]! : ip)?.text ?? '';
}

/** The address part of a gRPC peer string ("10.0.0.1:5000", "[fd00::1]:5000"), IPv4-mapped IPv6 unwrapped. */
export function peerAddress(peer: string): string {
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(peer);
  const host = bracketed ? bracketed[1]! : peer.slice(0, peer.lastIndexOf(':'));
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return mapped ? mapped[1]! : host;
}
