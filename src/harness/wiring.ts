import { readFile } from 'node:fs/promises';
import type { HarnessMetrics } from '../admin/metrics.ts';
import type { HarnessConfig } from '../config/types.ts';
import { IdentityComponent } from '../identity/component.ts';
import { prepareSpireAgent, spireAgentSupervisor } from '../identity/spire-agent.ts';
import { IptablesComponent } from '../iptables/component.ts';
import type { Logger } from '../log/logger.ts';
import { ProbesComponent } from '../probes/component.ts';
import { ProxyComponent } from '../proxy/component.ts';
import type { Component } from './component.ts';

export interface WiringContext {
  config: HarnessConfig;
  log: Logger;
  metrics: HarnessMetrics;
  /** The configuration in force now (changes on reload). */
  currentConfig: () => HarnessConfig;
}

/**
 * The daemon's components in start order (the architecture's startup sequence):
 * spire-agent (managed mode) → identity → iptables → probes → proxy. Identity, iptables
 * and probes start without waiting; the proxy's start waits for a validated SVID. Probes
 * run when there is a local probe or a registrar that may send the group's probes.
 */
export async function buildComponents({ config, log, metrics, currentConfig }: WiringContext): Promise<Component[]> {
  const registry = metrics.registry;
  const components: Component[] = [];

  if (config.spire.mode === 'managed') {
    const agent = spireAgentSupervisor({ config, log, registry });
    const restartOnChange: Component['update'] = async (next) => {
      const before = JSON.stringify([config.spire, config.identity.workloadApiSocket]);
      if (JSON.stringify([next.spire, next.identity.workloadApiSocket]) !== before) await agent.restart(prepareSpireAgent(next));
      config = next;
    };
    components.push(Object.assign(agent, { update: restartOnChange }));
  }

  const identity = new IdentityComponent({ config, log, registry });
  components.push(identity);
  components.push(new IptablesComponent({ config, log, registry }));
  // Before the proxy, whose start waits for the SVID: the workload's health needs nothing
  // from the data plane, and is known by the time the proxy and registration are up.
  if (config.probes.workload.length > 0 || config.control.registrarAddress !== '') {
    components.push(new ProbesComponent({ config, log, registry }));
  }

  components.push(new ProxyComponent({
    config,
    log,
    registry,
    identity,
    // Read at each (re)start, so a reload that changes the name or the anchors file counts.
    workloadName: () => currentConfig().workload.name,
    trustAnchorsPem: () => readFile(currentConfig().identity.trustAnchorsFile, 'utf8'),
  }));
  return components;
}
