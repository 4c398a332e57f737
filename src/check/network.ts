/**
 * Network area: the control-plane names resolve, their ports accept TCP, the cluster's pod
 * network is routed, and the ports the proxy and the harness listen on are free or already
 * theirs. Every check here has its own deadline; they all run at once.
 */
import { isIP } from 'node:net';
import type { HarnessConfig } from '../config/types.ts';
import { fail, formatMs, ok, skip, type Check, type Outcome } from './check.ts';
import type { OwnedListener, SocketOwner } from './effects.ts';
import { controlEndpoints, DNS_TIMEOUT_MS, type Endpoint, type Facts } from './facts.ts';
import { parseRouteGet } from './proc.ts';

export const TCP_TIMEOUT_MS = 2000;
const ROUTE_TIMEOUT_MS = 1500;

function formatAddress(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

function dnsFailure(host: string, settings: string[], err: Error & { code?: unknown }, timeoutMs: number): Outcome {
  const where = `or put an IP address in ${settings.join(' / ')}`;
  if (err.code === 'ENOTFOUND') {
    return fail(`${host} does not resolve: neither /etc/hosts nor DNS knows it`, `this machine must resolve the cluster's names: forward the cluster domain to the cluster DNS (the dnsmasq step of the Linkerd mesh-expansion guide: server=/cluster.local/<cluster DNS IP>), add an /etc/hosts entry, ${where}`);
  }
  if (err.code === 'ETIMEDOUT') {
    return fail(`resolving ${host} got no answer within ${formatMs(timeoutMs)}`, `the DNS servers in /etc/resolv.conf do not answer: check that they are reachable from this machine, ${where}`);
  }
  return fail(`resolving ${host} failed: ${err.message}`, `check /etc/resolv.conf and /etc/nsswitch.conf, ${where}`);
}

function connectFailure(endpoint: Endpoint, address: string, err: Error & { code?: unknown }, timeoutMs: number): string {
  const target = formatAddress(address, endpoint.port);
  switch (err.code) {
    case 'ECONNREFUSED':
      return `${target} refused the connection: nothing listens there`;
    case 'ETIMEDOUT':
      return `${target} did not answer within ${formatMs(timeoutMs)}: packets are dropped on the way (firewall, security group, or no route back)`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${target} is unreachable (${err.code}): no route to it`;
    default:
      return `${target}: ${err.message}`;
  }
}

/** One DNS check per distinct host name, one TCP check per endpoint, one route check per pod-network host. */
export function networkChecks(config: HarnessConfig, facts: Facts): Check[] {
  const endpoints = controlEndpoints(config);
  const checks: Check[] = [];
  if (endpoints.length === 0) {
    checks.push({
      id: 'network.dns',
      area: 'network',
      name: 'control-plane addresses are configured',
      timeoutMs: 1000,
      timeoutHint: 'cannot hang',
      run: async () => skip('proxy.destinationAddr is not set; see the config checks'),
    });
  }

  const hosts = new Map<string, Endpoint[]>();
  for (const endpoint of endpoints) hosts.set(endpoint.host, [...(hosts.get(endpoint.host) ?? []), endpoint]);
  for (const [host, users] of hosts) {
    if (isIP(host)) continue;
    const settings = [...new Set(users.map((u) => u.setting))];
    const roles = [...new Set(users.map((u) => u.role))].join(', ');
    checks.push({
      id: 'network.dns',
      subject: host,
      area: 'network',
      name: `${host} resolves (${roles})`,
      timeoutMs: DNS_TIMEOUT_MS + 1000,
      timeoutHint: 'the DNS servers in /etc/resolv.conf do not answer',
      async run() {
        try {
          return ok((await facts.resolve(host)).join(', '));
        } catch (err) {
          return dnsFailure(host, settings, err as Error, facts.ms(DNS_TIMEOUT_MS));
        }
      },
    });
  }

  const seen = new Set<string>();
  for (const endpoint of endpoints) {
    const key = `${endpoint.host}:${endpoint.port}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const roles = [...new Set(endpoints.filter((e) => `${e.host}:${e.port}` === key).map((e) => e.role))].join(', ');
    checks.push({
      id: 'network.tcp',
      subject: key,
      area: 'network',
      name: `${roles} at ${formatAddress(endpoint.host, endpoint.port)} accepts TCP connections`,
      timeoutMs: DNS_TIMEOUT_MS + TCP_TIMEOUT_MS + 500,
      timeoutHint: 'packets to the address are dropped on the way (firewall, security group)',
      async run() {
        const addresses = await facts.resolve(endpoint.host).catch(() => undefined);
        if (!addresses) return skip(`${endpoint.host} does not resolve; see above`);
        // Any one address answering is enough: clients try them in turn.
        const attempts = await Promise.allSettled(addresses.map((a) => facts.effects.connect(a, endpoint.port, facts.ms(TCP_TIMEOUT_MS))));
        const reached = addresses.filter((_, i) => attempts[i]!.status === 'fulfilled');
        if (reached.length > 0) return ok(`connected to ${reached.map((a) => formatAddress(a, endpoint.port)).join(', ')}`);
        const reasons = addresses.map((a, i) => connectFailure(endpoint, a, (attempts[i] as PromiseRejectedResult).reason as Error, facts.ms(TCP_TIMEOUT_MS)));
        return fail(
          reasons.join('; '),
          endpoint.role === 'registrar'
            ? 'the registrar must be reachable from this machine: check its Service (a LoadBalancer or NodePort for VMs outside the cluster) and firewalls, or control.registrarAddress'
            : `this machine must reach the ${endpoint.role} on the pod network: check firewalls and routes, the port in ${endpoint.setting}, and that linkerd-destination runs (kubectl -n linkerd get pods)`,
        );
      },
    });
  }

  // The destination and policy addresses are pod IPs (headless service), so a route to them is a route to the pod network.
  const podHosts = [...new Set(endpoints.filter((e) => e.role !== 'registrar' && e.role !== 'SPIRE server').map((e) => e.host))];
  for (const host of podHosts) {
    checks.push({
      id: 'network.route',
      subject: host,
      area: 'network',
      name: `the cluster's pod network is routed (addresses of ${host})`,
      timeoutMs: DNS_TIMEOUT_MS + ROUTE_TIMEOUT_MS,
      timeoutHint: 'ip route get did not answer',
      async run() {
        const addresses = await facts.resolve(host).catch(() => undefined);
        if (!addresses) return skip(`${host} does not resolve; see above`);
        const routes: string[] = [];
        for (const address of addresses) {
          const result = await facts.effects.runner.run(['ip', 'route', 'get', address], { timeoutMs: facts.ms(ROUTE_TIMEOUT_MS) });
          if (result.exitCode === 124) return fail(`ip route get ${address} did not answer within ${formatMs(facts.ms(ROUTE_TIMEOUT_MS))}`, 'the host is overloaded or netlink is stuck; run ip route get by hand');
          const route = result.exitCode === 0 ? parseRouteGet(result.stdout) : undefined;
          if (!route) {
            return fail(
              `no route to ${address}: ${result.stderr.trim() || `ip route get exited ${result.exitCode}`}`,
              `route the cluster's pod network through a gateway that reaches it: ip route add <pod CIDR> via <gateway> (persist it in the network configuration), or give this machine a default route`,
            );
          }
          routes.push(`${address} via ${route.via ?? 'on-link'}${route.dev ? ` dev ${route.dev}` : ''}`);
        }
        return ok(routes.join('; '));
      },
    });
  }
  return checks;
}

/** The ports the proxy and the harness listen on, with the setting that names each. */
export function listenPorts(config: HarnessConfig): Array<{ port: number; setting: string }> {
  return [
    { port: config.proxy.outboundPort, setting: 'proxy.outboundPort' },
    { port: config.proxy.inboundPort, setting: 'proxy.inboundPort' },
    { port: config.proxy.controlPort, setting: 'proxy.controlPort' },
    { port: config.proxy.adminPort, setting: 'proxy.adminPort' },
    { port: config.admin.port, setting: 'admin.port' },
  ];
}

function describeOwner(owner: SocketOwner): string {
  return `${owner.command} (pid ${owner.pid})`;
}

export function portChecks(config: HarnessConfig, facts: Facts): Check[] {
  const ports = listenPorts(config);
  return ports.map(({ port, setting }) => ({
    id: 'network.port',
    subject: String(port),
    area: 'network' as const,
    name: `port ${port} (${setting}) is free or held by mesh-harness`,
    timeoutMs: 3000,
    timeoutHint: 'reading /proc took too long',
    async run(): Promise<Outcome> {
      const [listeners, daemon, proxyUser] = await Promise.all([
        facts.listeners(ports.map((p) => p.port)),
        facts.daemon(),
        facts.proxyUser().catch(() => undefined),
      ]);
      const holding = listeners.filter((l: OwnedListener) => l.port === port);
      if (holding.length === 0) return ok('free');
      const daemonPid = daemon.running ? daemon.status.pid : undefined;
      const ours = (l: OwnedListener, o: SocketOwner): string | undefined => {
        if (daemonPid !== undefined && o.pid === daemonPid) return `the running mesh-harness, ${describeOwner(o)}`;
        if (daemonPid !== undefined && o.ancestors.includes(daemonPid)) return `${describeOwner(o)}, started by the running mesh-harness (pid ${daemonPid})`;
        if (proxyUser && l.uid === proxyUser.uid) return `${describeOwner(o)}, running as the proxy user ${proxyUser.name}`;
        return undefined;
      };
      const foreign: string[] = [];
      const mine: string[] = [];
      for (const listener of holding) {
        const where = formatAddress(listener.address, port);
        if (listener.owners.length === 0) {
          foreign.push(`${where} by a process not visible from here (uid ${listener.uid})`);
          continue;
        }
        for (const owner of listener.owners) {
          const who = ours(listener, owner);
          if (who) mine.push(`${where} by ${who}`);
          else foreign.push(`${where} by ${describeOwner(owner)}, uid ${listener.uid}`);
        }
      }
      if (foreign.length === 0) return ok(`held on ${[...new Set(mine)].join('; ')}`);
      return fail(
        `in use on ${[...new Set(foreign)].join('; ')}`,
        `stop that process (ss -ltnp 'sport = :${port}' shows it), or move ${setting} to a free port`,
      );
    },
  }));
}
