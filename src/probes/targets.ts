/**
 * Where a probe from the cluster may connect. Whoever edits an ExternalGroup writes probes
 * that every VM of the group runs; left unbounded, an httpGet or tcpSocket probe is a port
 * scanner on each VM's network (the cloud metadata service, a database next door) whose
 * findings come back in the ExternalWorkload's Ready message. So a cluster probe may reach
 * loopback and the workload's own IPs, and beyond that only what the VM's local config
 * admits in `probes.allowClusterHosts`.
 *
 * Targets are judged by IP address only. A host name from the cluster is refused rather
 * than resolved and checked: the answer could change between the check and the connect,
 * any name goes wherever its DNS (perhaps the group editor's) says, and numeric forms such
 * as "2852039166" resolve to 169.254.169.254. Local probes (the VM's own config) are not
 * bounded: the VM trusts itself.
 *
 * Pure: the workload IPs and the allowance are given.
 */
import { isIP } from 'node:net';
import { cidrContains, parseCidr, type Cidr } from '../util/cidr.ts';
import type { ProbeHandler } from './spec.ts';

export interface ClusterTargetPolicy {
  /** The workload's IPs as the harness announces them (workload.ips, or detected). */
  workloadIps: readonly string[];
  /** probes.allowClusterHosts. */
  allowClusterHosts: readonly Cidr[];
}

const LOOPBACK: readonly Cidr[] = [parseCidr('127.0.0.0/8')!, parseCidr('::1/128')!];

function isWorkloadIp(address: string, workloadIps: readonly string[]): boolean {
  return workloadIps.some((ip) => {
    const own = parseCidr(ip);
    return own !== undefined && cidrContains(own, address);
  });
}

/**
 * Why this VM does not let a probe from the cluster connect where `handler` points, or
 * undefined when it may. Exec probes are not network probes (see allowClusterExec).
 */
export function clusterTargetProblem(handler: ProbeHandler, policy: ClusterTargetPolicy): string | undefined {
  if (handler.kind === 'exec') return undefined;
  const host = handler.host;
  if (!isIP(host)) {
    return `it names its target by host name (${JSON.stringify(host)}); a probe from the cluster must give an IP address (leave host out for 127.0.0.1), since a name resolves on this VM to wherever DNS says`;
  }
  if (LOOPBACK.some((cidr) => cidrContains(cidr, host))) return undefined;
  if (isWorkloadIp(host, policy.workloadIps)) return undefined;
  if (policy.allowClusterHosts.some((cidr) => cidrContains(cidr, host))) return undefined;
  const own = policy.workloadIps.length ? `this workload's IPs (${policy.workloadIps.join(', ')})` : 'this workload\'s IPs (none known)';
  const allowed = policy.allowClusterHosts.length ? ` nor in probes.allowClusterHosts (${policy.allowClusterHosts.map((c) => c.text).join(', ')})` : '';
  return `it targets ${host}, which is neither loopback nor ${own}${allowed}; add the address to probes.allowClusterHosts in the VM's local config to allow it`;
}
