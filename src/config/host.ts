/**
 * Decisions that need the host as well as the configuration, made once per load and read
 * by everything that depends on them: the iptables rules, the proxy environment and the
 * checks. Deciding them in one place is what keeps ip6tables from redirecting IPv6 to a
 * proxy that was told to listen on IPv4 only.
 */
import { readFileSync } from 'node:fs';

/** What the loader needs to know about the host. Tests give their own. */
export interface HostFacts {
  /** IPv6 is usable: the kernel has it and the loopback interface holds ::1 (the proxy binds [::1]). */
  ipv6Loopback: boolean;
}

export interface HostDecisions {
  /** Manage ip6tables and have the proxy listen on IPv6 too. */
  ipv6: boolean;
}

/** /proc/net/if_inet6 exists only with IPv6 in the kernel; lo's ::1 is missing when IPv6 is disabled by sysctl. */
export function readHostFacts(): HostFacts {
  let table = '';
  try {
    table = readFileSync('/proc/net/if_inet6', 'utf8');
  } catch {
    return { ipv6Loopback: false };
  }
  return { ipv6Loopback: /^0{31}1\s/m.test(table) };
}

/** iptables.ipv6: `on` and `off` decide; `auto` follows the host. A problem when `on` cannot work. */
export function decideHost(setting: 'auto' | 'on' | 'off', facts: HostFacts): { decisions: HostDecisions; problems: string[] } {
  if (setting === 'on' && !facts.ipv6Loopback) {
    return {
      decisions: { ipv6: false },
      problems: ['iptables.ipv6: got "on"; this host has no usable IPv6 (no ::1 in /proc/net/if_inet6: IPv6 is disabled in the kernel or by sysctl); enable it or set iptables.ipv6 to auto or off'],
    };
  }
  return { decisions: { ipv6: setting === 'on' || (setting === 'auto' && facts.ipv6Loopback) }, problems: [] };
}
