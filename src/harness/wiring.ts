import { readFile } from 'node:fs/promises';
import type { HarnessMetrics } from '../admin/metrics.ts';
import type { HarnessConfig } from '../config/types.ts';
import { IdentityComponent } from '../identity/component.ts';
import { checkSpireAgent, prepareSpireAgent, spireAgentSupervisor } from '../identity/spire-agent.ts';
import { IptablesComponent } from '../iptables/component.ts';
import type { Logger } from '../log/logger.ts';
import { ProxyComponent } from '../proxy/component.ts';
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
 * spire-agent (managed mode) → identity → iptables → proxy. Identity and iptables start
 * without waiting (iptables prepares its chains only); the proxy's start waits for a
 * validated SVID, and the proxy's first readiness lets iptables insert the jumps.
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

  const proxy = new ProxyComponent({
    config,
    log,
    registry,
    identity,
    // Read at each (re)start, so a reload that changes the name or the anchors file counts.
    workloadName: () => currentConfig().workload.name,
    trustAnchorsPem: () => readFile(currentConfig().identity.trustAnchorsFile, 'utf8'),
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
  return components;
}
