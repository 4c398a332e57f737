/**
 * Control-plane area: whether the registrar accepts this machine's identity for its group.
 *
 * The registration protocol has no dry run: a hello from `check` would register this
 * machine, and with the same identity and node displace the running harness's session.
 * So the answer is read where it already is: the running harness's `registration`
 * component in /status (accepted, or refused with the registrar's reason code in
 * `detail.refusal`). Each reason gets its own hint: the fix for a group that does not
 * allow the identity is on the cluster, the fix for a taken name is on this machine.
 */
import type { AdminStatus } from '../admin/server.ts';
import type { HarnessConfig } from '../config/types.ts';
import { configuredWorkloadName } from '../protocol/workload-name.ts';
import type { Refusal } from '../registration/component.ts';
import { fail, ok, skip, warn, type Check, type Outcome } from './check.ts';
import type { Facts } from './facts.ts';

type ComponentStatus = AdminStatus['components'][number];

export function controlPlaneChecks(config: HarnessConfig, facts: Facts): Check[] {
  const group = config.workload.group || '(workload.group not set)';
  return [
    {
      id: 'control.registrar',
      area: 'control plane',
      name: `the registrar accepts ${config.identity.spiffeId || 'this identity'} for group ${group}`,
      timeoutMs: 2500,
      timeoutHint: 'the admin API accepted the connection but did not answer; is the harness hung?',
      async run() {
        if (!config.control.registrarAddress) return skip('registration not configured (control.registrarAddress is empty): the ExternalWorkload must be created by hand');
        const daemon = await facts.daemon();
        if (!daemon.running) {
          return skip(`no running harness to ask: asking the registrar from check would register this machine (the protocol has no dry run); DNS and TCP to ${config.control.registrarAddress} are checked under network, and with the harness running this check shows the registrar's answer`);
        }
        const registration = daemon.status.components.find((c) => c.name === 'registration');
        if (!registration) return skip(`the running harness (pid ${daemon.status.pid}) does not register with a registrar; restart it to apply control.registrarAddress`);
        if (registration.ready) return ok(`${registration.phase}: ${registration.message}`);
        const refusal = refusalOf(registration);
        if (refusal) return refusalOutcome(config, refusal);
        const said = `${registration.phase}: ${registration.message}${registration.lastError ? ` (${registration.lastError})` : ''}`;
        return warn(said, 'the harness is still connecting; see the network checks for the registrar address, and mesh-harness status');
      },
    },
  ];
}

type ShownRefusal = Pick<Refusal, 'reason' | 'message'> & Partial<Refusal>;

/**
 * The registrar's current refusal as the running harness shows it: `detail.refusal`, or,
 * from a harness started before that field existed, the reason code in its message.
 */
export function refusalOf(registration: Pick<ComponentStatus, 'message' | 'lastError' | 'detail'>): ShownRefusal | undefined {
  const detail = registration.detail?.['refusal'] as Partial<Refusal> | undefined;
  if (detail && typeof detail.reason === 'string' && typeof detail.message === 'string') return detail as ShownRefusal;
  const older = /^refused by the registrar \(([A-Za-z]+)\)/.exec(registration.message);
  return older ? { reason: older[1]!, message: registration.lastError ?? '' } : undefined;
}

/** What the refusal means and what to do about it, by the registrar's reason code. */
export function refusalOutcome(config: HarnessConfig, refusal: ShownRefusal): Outcome {
  const { namespace, group, nodeName } = config.workload;
  const id = config.identity.spiffeId;
  const externalGroup = `ExternalGroup ${namespace}/${group}`;
  const name = refusal.workloadName || configuredWorkloadName(config);
  const message = `the registrar refused this machine (${refusal.reason}): ${refusal.message}${refusal.retryAfterSeconds !== undefined ? `; the harness asks again ${refusal.retryAfterSeconds} s after this refusal, by itself` : ''}`;
  switch (refusal.reason) {
    case 'NotAllowed':
      return fail(message, `add ${id}${wildcardFor(id)} to spec.allowedIdentities of ${externalGroup} (kubectl -n ${namespace} edit externalgroup ${group}), or set workload.group / workload.namespace to a group that allows it`);
    case 'GroupNotFound':
      return fail(message, `${externalGroup} does not exist: create it with ${id} in spec.allowedIdentities, or set workload.group / workload.namespace to an existing group (kubectl -n ${namespace} get externalgroups)`);
    case 'NameTaken': {
      const fix = config.workload.name
        ? `workload.name ${name} must be unique in namespace ${namespace}: choose another, or leave it empty to derive one from workload.nodeName`
        : `the name derives from workload.nodeName ${nodeName} and ${id}, so give this machine a workload.nodeName of its own (cloned images often share one)`;
      return fail(message, `ExternalWorkload ${namespace}/${name} is held by another machine (the message names it), or was created by hand: ${fix}; kubectl -n ${namespace} get externalworkload ${name} -o yaml shows the holder, and a gone machine's workload is deleted after the registrar's TTL`);
    }
    case 'NameMismatch':
      return fail(message, `this machine gave its proxy the name ${name} (workload.name), which is not the registrar's name for it: empty workload.name so both derive the same name; to keep a name of its own, ${externalGroup} needs spec.allowCustomNames: true and the name must start with "${group}-" and not end in "-" and 10 hex digits (the message says which rule it broke); then systemctl reload mesh-harness`);
    case 'TooManyWorkloads':
      return fail(message, `${id} already holds as many ExternalWorkloads in ${externalGroup} as its spec.maxWorkloadsPerIdentity allows (the message names them): give this machine a SPIFFE ID of its own (a SPIRE entry, and identity.spiffeId), raise spec.maxWorkloadsPerIdentity (kubectl -n ${namespace} edit externalgroup ${group}), or delete the ExternalWorkload of a machine that is gone (kubectl -n ${namespace} delete externalworkload NAME; the registrar deletes one after its TTL)`);
    case 'IPNotAllowed':
      return fail(message, `the registrar accepts a workload IP only when this machine connects from it, or when it is inside spec.allowedIPs of ${externalGroup} (the message names the IP and the address the registrar saw): set workload.ips to the address the registrar sees (or leave it empty to announce the default route's address), or, behind NAT or for an address announced on purpose, add a CIDR covering it to spec.allowedIPs (kubectl -n ${namespace} edit externalgroup ${group})`);
    case 'ServerNameMismatch':
      return fail(message, `identity.serverName (${config.identity.serverName || 'empty'}) is the server name this machine's proxy presents and must be the one the cluster holds: set it to the name the message gives (spec.template.serverName of ${externalGroup}, or a DNS name of this machine's SVID), then systemctl reload mesh-harness; or change the group's spec.template.serverName`);
    case 'NoServerName':
      return fail(message, `${externalGroup} does not say which server name its machines' proxies present and this machine's SVID has no DNS name: set spec.template.serverName${config.identity.serverName ? ` (to ${config.identity.serverName}, this machine's identity.serverName, if that is the right name)` : ''} (kubectl -n ${namespace} edit externalgroup ${group}), or issue the SVID with a DNS name (spire-server entry create -dns NAME)`);
    case 'TooManyStreams':
      return warn(message, `more streams of ${id} are waiting for the registrar at once than its limits.pendingStreamsPerIdentity allows: many machines sharing this identity reconnecting at once (the harness retries by itself), or something else is opening streams with this identity's SVID`);
    case 'InvalidMessage':
      return fail(message, 'the registrar refused a state change from this harness (the message says what is wrong with it): upgrade mesh-harness to the registrar\'s version, and report it if it persists');
    case 'NotAuthenticated':
      return fail(message, `the SVID chains to the registrar's CA, but its SPIFFE ID is not one the registrar serves: identity.spiffeId ${id} must be in the registrar's trustDomain (the Linkerd trust domain), as the SVID's only URI SAN`);
    case 'InvalidHello':
      return fail(message, 'fix the setting the registrar names (workload.group, workload.namespace, workload.nodeName, workload.name, workload.ips, identity.serverName), then systemctl reload mesh-harness');
    case 'UnsupportedProtocolVersion':
      return fail(message, 'this mesh-harness is older than the registrar serves: upgrade the mesh-harness package');
    case 'Draining':
      return warn(message, 'a registrar replica is shutting down (a rollout); the harness reconnects to another within seconds: run check again');
    case 'Replaced':
      return warn(message, `a newer stream for ExternalWorkload ${namespace}/${name} took over (a reconnect through another replica does this); if it repeats, two harnesses with ${id} and workload.nodeName ${nodeName} are running`);
    default:
      return fail(message, `reason ${refusal.reason} is not one this mesh-harness knows; the registrar's logs say more (kubectl -n mesh-expansion logs deploy/mesh-registrar)`);
  }
}

/** " (or a pattern covering it, such as spiffe://td/vm/*)" for an ID with a path of two or more segments. */
function wildcardFor(id: string): string {
  const parent = /^(spiffe:\/\/[^/]+\/.+)\/[^/]+$/.exec(id);
  return parent ? ` (or a pattern covering it, such as ${parent[1]}/*)` : '';
}
