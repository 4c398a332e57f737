import { readFile } from 'node:fs/promises';
import type { HarnessMetrics } from '../admin/metrics.ts';
import type { HarnessConfig } from '../config/types.ts';
import { IdentityComponent } from '../identity/component.ts';
import { checkSpireAgent, prepareSpireAgent, spireAgentSupervisor } from '../identity/spire-agent.ts';
import { IptablesComponent } from '../iptables/component.ts';
import type { Logger } from '../log/logger.ts';
import { ProbesComponent } from '../probes/component.ts';
import { ProxyComponent } from '../proxy/component.ts';
import { RegistrationComponent, type RegistrarSettings } from '../registration/component.ts';
import { ProbedReadiness, ProxyReadiness } from '../registration/readiness.ts';
import { detectWorkloadIps } from '../util/host-ips.ts';
import type { Component, ComponentState } from '../component/component.ts';

export interface WiringContext {
  config: HarnessConfig;
  log: Logger;
  metrics: HarnessMetrics;
  /** The configuration in force now (changes on reload). */
  currentConfig: () => HarnessConfig;
}

/**
 * The daemon's components in start order (the architecture's startup sequence):
 * spire-agent (managed mode) → identity → iptables → probes → proxy → registration (when
 * control.registrarAddress is set). Identity, iptables and probes start without waiting
 * (iptables prepares its chains only); the proxy's start waits for a validated SVID, and so
 * does the registration's connection (it presents the SVID for mutual TLS). The proxy's
 * first readiness lets iptables insert the jumps. The proxy never waits for the registrar:
 * its workload name is derived locally. Probes run when there is a local probe or a
 * registrar that may send the group's probes; the registration reports their readiness
 * with the proxy's and hands them the group's probes.
 */
export async function buildComponents({ config, log, metrics, currentConfig }: WiringContext): Promise<Component[]> {
  const registry = metrics.registry;
  const components: Component[] = [];

  if (config.spire.mode === 'managed') {
    const agent = spireAgentSupervisor({ config, log, registry });
    // Reload: the agent restarts only when its settings changed, after they were checked.
    const prepare: Component['prepare'] = async (next) => {
      const changed = JSON.stringify([next.spire, next.identity.workloadApiSocket]) !== JSON.stringify([config.spire, config.identity.workloadApiSocket]);
      if (changed) checkSpireAgent(next);
      return {
        commit: async () => {
          if (changed) await agent.restart(prepareSpireAgent(next));
          config = next;
        },
      };
    };
    components.push(Object.assign(agent, { prepare }));
  }

  const identity = new IdentityComponent({ config, log, registry });
  components.push(identity);
  const iptables = new IptablesComponent({ config, log, registry });
  components.push(iptables);
  // Detected once: the default route's addresses, when workload.ips is not configured.
  const detectedIps = config.workload.ips.length ? [] : detectWorkloadIps();
  // Before the proxy, whose start waits for the SVID: the workload's health needs nothing
  // from the data plane, and is known by the time the proxy and registration are up.
  let probes: ProbesComponent | undefined;
  if (config.probes.workload.length > 0 || config.control.registrarAddress !== '') {
    // The addresses the registration announces are the ones cluster probes may target.
    const workloadIps = () => (currentConfig().workload.ips.length ? currentConfig().workload.ips : detectedIps);
    probes = new ProbesComponent({ config, log, registry, workloadIps });
    components.push(probes);
  }

  const trustAnchorsPem = () => readFile(currentConfig().identity.trustAnchorsFile, 'utf8');
  let registration: RegistrationComponent | undefined;
  const proxy = new ProxyComponent({
    config,
    log,
    registry,
    identity,
    // Read at each (re)start, so a reload that changes the name or the anchors file counts.
    workloadName: () => registration?.workloadName() ?? '',
    trustAnchorsPem,
    clusterSettings: () => registration?.settings()?.proxy,
    detectedIps: () => detectedIps,
  });
  // The jumps into the redirect chains go in only once the proxy has answered ready: a
  // machine whose proxy never comes up (no SVID, say) keeps all of its connectivity.
  const onProxyChange = (state: ComponentState) => {
    if (state.phase !== 'Ready') return;
    proxy.off('change', onProxyChange);
    iptables.enableRedirect().catch((err: Error) => log.error({ err: err.message }, 'could not enable traffic redirection'));
  };
  proxy.on('change', onProxyChange);
  components.push(proxy);

  if (config.control.registrarAddress) {
    const readiness = probes ? new ProbedReadiness(proxy, probes) : new ProxyReadiness(proxy);
    registration = new RegistrationComponent({ config, log, registry, identity, readiness, trustAnchorsPem, detectedIps: () => detectedIps });
    // New cluster proxy settings re-render the proxy environment; the proxy restarts only if it changed.
    registration.on('settings', (settings: RegistrarSettings) => {
      probes?.setClusterProbes({ probes: settings.probes, group: `${config.workload.namespace}/${config.workload.group}` });
      proxy.prepare(currentConfig()).then((update) => update.commit()).catch((err: Error) => log.error({ err: err.message }, 'applying the registrar\'s proxy settings failed'));
    });
    components.push(registration);
  }
  return components;
}
