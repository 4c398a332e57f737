/**
 * The desired ruleset as a pure function of configuration, following linkerd2-proxy-init's
 * semantics: inbound TCP goes to the proxy inbound port, outbound TCP to the proxy
 * outbound port, and a short list of RETURN rules in front says what is left alone.
 *
 * The renderer takes numeric ids; resolving the proxy user and group happens before (see
 * desired.ts), so the same input always renders the same bytes.
 */
import type { Cidr, HarnessConfig, PortRange } from '../config/types.ts';
import { COMMENT_TAG, INBOUND_CHAIN, OUTBOUND_CHAIN, type Family, type Rule, type Ruleset } from './ruleset.ts';

export interface RenderInput {
  /** uid of the proxy user: its connections are never redirected. */
  proxyUid: number;
  /** gid of the group the proxy and the harness run with: never redirected either. */
  harnessGid: number;
  inboundPort: number;
  outboundPort: number;
  /**
   * Inbound ports no configuration can redirect: SSH (22 and the ports sshd is configured
   * with, unless iptables.redirectSsh) and the proxy's own inbound, admin and control
   * ports. They are exempt before anything else, so a wrong ignoreInboundPorts or
   * portsToRedirect cannot lock the operator out.
   */
  protectedInboundPorts: number[];
  /** Empty: every inbound TCP port except the ignored ones. */
  portsToRedirect: readonly PortRange[];
  ignoreInboundPorts: readonly PortRange[];
  ignoreOutboundPorts: readonly PortRange[];
  /** Parsed by the config loader, in the canonical form iptables-save prints. */
  ignoreInboundSubnets: readonly Cidr[];
  ignoreOutboundSubnets: readonly Cidr[];
}

/** The multiport match takes at most 15 ports, a range counting as two. */
export const MULTIPORT_LIMIT = 15;

function portRanges(specs: readonly PortRange[]): PortRange[] {
  const ranges = [...specs];
  ranges.sort((a, b) => a.from - b.from || a.to - b.to);
  // Overlapping entries collapse so a port listed twice costs one slot, not two.
  const merged: PortRange[] = [];
  for (const range of ranges) {
    const last = merged[merged.length - 1];
    if (last && range.from <= last.to) last.to = Math.max(last.to, range.to);
    else merged.push({ ...range });
  }
  return merged;
}

/** Comma lists for `--dports`, each within the multiport limit. */
export function multiportLists(ranges: PortRange[]): string[] {
  const lists: string[] = [];
  let current: string[] = [];
  let weight = 0;
  for (const { from, to } of ranges) {
    const cost = from === to ? 1 : 2;
    if (weight + cost > MULTIPORT_LIMIT) {
      lists.push(current.join(','));
      current = [];
      weight = 0;
    }
    current.push(from === to ? String(from) : `${from}:${to}`);
    weight += cost;
  }
  if (current.length) lists.push(current.join(','));
  return lists;
}

function subnetsFor(family: Family, subnets: readonly Cidr[]): string[] {
  const texts: string[] = [];
  for (const cidr of subnets) {
    if (cidr.family === family && !texts.includes(cidr.text)) texts.push(cidr.text);
  }
  return texts;
}

function comment(why: string): string[] {
  return ['-m', 'comment', '--comment', `${COMMENT_TAG}: ${why}`];
}

function inboundRules(input: RenderInput, family: Family): Rule[] {
  const rule = (args: string[]): Rule => ({ chain: INBOUND_CHAIN, args });
  const rules: Rule[] = [];
  const exempt = input.protectedInboundPorts.map((port) => ({ from: port, to: port }));
  for (const ports of multiportLists(portRanges(exempt))) {
    rules.push(rule(['-p', 'tcp', '-m', 'multiport', '--dports', ports, ...comment('SSH and proxy ports, always exempt'), '-j', 'RETURN']));
  }
  for (const ports of multiportLists(portRanges(input.ignoreInboundPorts))) {
    rules.push(rule(['-p', 'tcp', '-m', 'multiport', '--dports', ports, ...comment('ignored inbound ports'), '-j', 'RETURN']));
  }
  for (const subnet of subnetsFor(family, input.ignoreInboundSubnets)) {
    rules.push(rule(['-s', subnet, '-p', 'tcp', ...comment('ignored inbound source subnet'), '-j', 'RETURN']));
  }
  const redirect = ['-j', 'REDIRECT', '--to-ports', String(input.inboundPort)];
  const why = comment(`inbound to proxy port ${input.inboundPort}`);
  if (input.portsToRedirect.length === 0) {
    rules.push(rule(['-p', 'tcp', ...why, ...redirect]));
  } else {
    for (const ports of multiportLists(portRanges(input.portsToRedirect))) {
      rules.push(rule(['-p', 'tcp', '-m', 'multiport', '--dports', ports, ...why, ...redirect]));
    }
  }
  return rules;
}

function outboundRules(input: RenderInput, family: Family): Rule[] {
  const rule = (args: string[]): Rule => ({ chain: OUTBOUND_CHAIN, args });
  const rules: Rule[] = [
    rule(['-m', 'owner', '--uid-owner', String(input.proxyUid), ...comment('proxy user'), '-j', 'RETURN']),
    rule(['-m', 'owner', '--gid-owner', String(input.harnessGid), ...comment('proxy and harness group'), '-j', 'RETURN']),
    // Everything leaving through lo stays local: 127.0.0.0/8, ::1 and the machine's own
    // addresses. The connection never reaches PREROUTING's nat hook either, so it is not
    // sent through the proxy in any direction.
    rule(['-o', 'lo', ...comment('loopback'), '-j', 'RETURN']),
  ];
  for (const subnet of subnetsFor(family, input.ignoreOutboundSubnets)) {
    rules.push(rule(['-d', subnet, ...comment('ignored outbound destination subnet'), '-j', 'RETURN']));
  }
  for (const ports of multiportLists(portRanges(input.ignoreOutboundPorts))) {
    rules.push(rule(['-p', 'tcp', '-m', 'multiport', '--dports', ports, ...comment('ignored outbound ports'), '-j', 'RETURN']));
  }
  rules.push(rule(['-p', 'tcp', ...comment(`outbound to proxy port ${input.outboundPort}`), '-j', 'REDIRECT', '--to-ports', String(input.outboundPort)]));
  return rules;
}

/** The desired table nat for one family. */
export function renderRuleset(input: RenderInput, family: Family): Ruleset {
  return {
    family,
    chains: [INBOUND_CHAIN, OUTBOUND_CHAIN],
    rules: [...inboundRules(input, family), ...outboundRules(input, family)],
    jumps: [
      { chain: 'PREROUTING', args: ['-p', 'tcp', ...comment('inbound TCP through the proxy'), '-j', INBOUND_CHAIN] },
      { chain: 'OUTPUT', args: ['-p', 'tcp', ...comment('outbound TCP through the proxy'), '-j', OUTBOUND_CHAIN] },
    ],
  };
}

/** The port SSH uses when sshd's configuration says nothing else. */
export const SSH_PORT = 22;

/** What the render needs from the host, looked up before (desired.ts). */
export interface HostFacts {
  proxyUid: number;
  harnessGid: number;
  /** Ports sshd is configured to listen on (sshd_config `Port`), when it could be read. */
  sshdPorts?: number[];
}

/** The inbound ports always exempt from redirection, sorted and without duplicates. */
export function protectedInboundPorts(config: Pick<HarnessConfig, 'proxy' | 'iptables'>, sshdPorts: number[] = []): number[] {
  const { proxy, iptables } = config;
  const ssh = iptables.redirectSsh ? [] : [SSH_PORT, ...sshdPorts];
  return [...new Set([...ssh, proxy.inboundPort, proxy.adminPort, proxy.controlPort])].sort((a, b) => a - b);
}

/** The render input from configuration and the host facts (resolved ids, sshd's ports). */
export function renderInputFor(config: Pick<HarnessConfig, 'proxy' | 'iptables'>, host: HostFacts): RenderInput {
  const { iptables, proxy } = config;
  return {
    proxyUid: host.proxyUid,
    harnessGid: host.harnessGid,
    inboundPort: proxy.inboundPort,
    outboundPort: proxy.outboundPort,
    protectedInboundPorts: protectedInboundPorts(config, host.sshdPorts),
    portsToRedirect: iptables.portsToRedirect,
    ignoreInboundPorts: iptables.ignoreInboundPorts,
    ignoreOutboundPorts: iptables.ignoreOutboundPorts,
    ignoreInboundSubnets: iptables.ignoreInboundSubnets,
    ignoreOutboundSubnets: iptables.ignoreOutboundSubnets,
  };
}
