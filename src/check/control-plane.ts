/**
 * Control-plane area: whether the registrar accepts this machine's identity for its group.
 *
 * The registration protocol has no dry run: a hello from `check` would register this
 * machine, and with the same identity and node displace the running harness's session.
 * So the answer is read where it already is: the running harness's `registration`
 * component in /status (accepted, or refused with the registrar's reason).
 */
import type { HarnessConfig } from '../config/types.ts';
import { fail, ok, skip, warn, type Check } from './check.ts';
import type { Facts } from './facts.ts';

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
        const said = `${registration.phase}: ${registration.message}${registration.lastError ? ` (${registration.lastError})` : ''}`;
        if (registration.ready) return ok(said);
        if (/refused/i.test(registration.message)) {
          return fail(said, `the ExternalGroup ${config.workload.namespace}/${group} must exist and allow ${config.identity.spiffeId} (kubectl -n ${config.workload.namespace} get externalgroup ${group} -o yaml), and workload.group / workload.namespace must name it`);
        }
        return warn(said, 'the harness is still connecting; see the network checks for the registrar address, and mesh-harness status');
      },
    },
  ];
}
