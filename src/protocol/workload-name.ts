/**
 * The ExternalWorkload name, a pure function both sides compute: the harness gives it to
 * its proxy (LINKERD2_PROXY_POLICY_WORKLOAD) before the registrar answers, so the data
 * plane never waits on the control plane, and the registrar derives the same name from
 * what it authenticated.
 *
 * Stable across restarts and IP changes (no IP goes in), unique per machine (the hash
 * covers the SPIFFE ID and the node name), and a valid DNS-1123 label of at most 63
 * characters: `<group>-<node>-<hash>`, each readable part cut to fit.
 */
import { createHash } from 'node:crypto';

export interface WorkloadNameInput {
  namespace: string;
  group: string;
  nodeName: string;
  spiffeId: string;
}

const MAX_LABEL = 63;
const HASH_LENGTH = 10;
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function isDnsLabel(value: string): boolean {
  return value.length <= MAX_LABEL && LABEL.test(value);
}

/** Lower case, runs of anything outside [a-z0-9] turned into one '-', no '-' at either end. */
function sanitize(value: string): string {
  return value.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}

export function workloadName({ namespace, group, nodeName, spiffeId }: WorkloadNameInput): string {
  // NUL cannot occur in any of the parts, so distinct inputs never join to the same text.
  const hash = createHash('sha256').update([namespace, group, nodeName, spiffeId].join('\0')).digest('hex').slice(0, HASH_LENGTH);
  const room = MAX_LABEL - HASH_LENGTH - 1;
  const prefix = [sanitize(group), sanitize(nodeName)].filter(Boolean).join('-').slice(0, room).replace(/-+$/, '');
  return prefix ? `${prefix}-${hash}` : `w-${hash}`;
}

/**
 * The name a harness uses: `workload.name` when configured, otherwise derived. Empty only
 * when there is no SPIFFE ID to derive it from (then the registrar cannot register the
 * machine either).
 */
export function configuredWorkloadName(config: { workload: { name: string; namespace: string; group: string; nodeName: string }; identity: { spiffeId: string } }): string {
  if (config.workload.name) return config.workload.name;
  if (!config.identity.spiffeId) return '';
  return workloadName({ namespace: config.workload.namespace, group: config.workload.group, nodeName: config.workload.nodeName, spiffeId: config.identity.spiffeId });
}
