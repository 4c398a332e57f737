/**
 * Host area: the privileges the harness needs and the account the proxy runs as.
 */
import type { HarnessConfig } from '../config/types.ts';
import { fail, ok, type Check } from './check.ts';
import type { CheckEffects } from './effects.ts';
import type { Facts } from './facts.ts';
import { hasCapability, parseProcStatus, type CapabilityName } from './proc.ts';

/** Why the harness needs each capability, for the failure message. */
const NEEDED: Array<{ cap: CapabilityName; why: string; when: (config: HarnessConfig | undefined) => boolean }> = [
  { cap: 'CAP_NET_ADMIN', why: 'iptables rules', when: (config) => config?.iptables.enabled ?? true },
  { cap: 'CAP_SETUID', why: 'starting the proxy as proxy.user', when: () => true },
  { cap: 'CAP_SETGID', why: 'starting the proxy as proxy.group', when: () => true },
  { cap: 'CAP_KILL', why: 'stopping the proxy, which runs as another user', when: () => true },
];

/** The privilege check; it needs no valid configuration (without one it assumes iptables is enabled). */
export function privilegeCheck(effects: Pick<CheckEffects, 'readText'>, config: HarnessConfig | undefined): Check {
  return {
    id: 'host.privileges',
    area: 'host',
    name: 'running as root or with the capabilities the harness needs',
    timeoutMs: 1000,
    timeoutHint: 'reading /proc/self/status cannot hang; please report this',
    async run() {
      const creds = parseProcStatus(effects.readText('/proc/self/status'));
      const needed = NEEDED.filter((n) => n.when(config));
      const missing = needed.filter((n) => !hasCapability(creds, n.cap));
      const who = creds.uid === 0 ? 'root' : `uid ${creds.uid}`;
      if (missing.length === 0) return ok(`${who} with ${needed.map((n) => n.cap).join(', ')}`);
      return fail(
        `${who} lacks ${missing.map((n) => `${n.cap} (${n.why})`).join(', ')}`,
        creds.uid === 0
          ? 'root without these capabilities: this shell runs in a restricted container or under a reduced bounding set; run mesh-harness where the service runs (systemd unit as shipped, User=root)'
          : `run as root (the mesh-harness service does), or grant them: systemd AmbientCapabilities=${missing.map((n) => n.cap).join(' ')}`,
      );
    },
  };
}

export function accountChecks(config: HarnessConfig, facts: Facts): Check[] {
  const create = 'create it as the package does: systemd-sysusers mesh-harness.conf (from a checkout: sh packaging/scripts/create-meshproxy-account.sh)';
  return [
    {
      id: 'host.user',
      area: 'host',
      name: `user ${config.proxy.user} (proxy.user) exists`,
      timeoutMs: 2500,
      timeoutHint: 'getent did not answer: is the NSS backend (LDAP, SSSD) reachable?',
      async run() {
        try {
          const user = await facts.proxyUser();
          return ok(`uid ${user.uid}`);
        } catch (err) {
          return fail((err as Error).message, config.proxy.user === 'meshproxy' ? create : `create user ${config.proxy.user} or set proxy.user to an existing one`);
        }
      },
    },
    {
      id: 'host.group',
      area: 'host',
      name: `group ${config.proxy.group} (proxy.group) exists`,
      timeoutMs: 2500,
      timeoutHint: 'getent did not answer: is the NSS backend (LDAP, SSSD) reachable?',
      async run() {
        try {
          const group = await facts.proxyGroup();
          return ok(`gid ${group.gid}`);
        } catch (err) {
          return fail((err as Error).message, config.proxy.group === 'meshproxy' ? create : `create group ${config.proxy.group} or set proxy.group to an existing one`);
        }
      },
    },
  ];
}
