/**
 * The list of checks for a configuration, in the order they are printed. Without a valid
 * configuration only what needs none runs; every other area says why it was skipped.
 */
import { AREAS, skip, type Area, type Check } from './check.ts';
import { accountChecks, privilegeCheck } from './host.ts';
import { binaryChecks, iptablesChecks } from './binaries.ts';
import { configChecks, type ConfigLoad } from './config.ts';
import { controlPlaneChecks } from './control-plane.ts';
import { daemonChecks } from './daemon.ts';
import type { CheckEffects } from './effects.ts';
import { Facts } from './facts.ts';
import { identityChecks } from './identity.ts';
import { networkChecks, portChecks } from './network.ts';

/** `scale`: this run's bound over the default one (check --timeout), applied to every inner deadline. */
export function planChecks(load: ConfigLoad, effects: CheckEffects, scale = 1): Check[] {
  if (!load.ok) {
    const skipped = (area: Area): Check => ({
      id: `${area.replace(' ', '-')}.skipped`,
      area,
      name: `${area} checks`,
      timeoutMs: 1000,
      timeoutHint: 'cannot hang',
      run: async () => skip('the configuration is invalid; see above'),
    });
    return [...configChecks(load), privilegeCheck(effects, undefined), ...AREAS.filter((a) => a !== 'config' && a !== 'host').map(skipped)];
  }
  const { config } = load.loaded;
  const facts = new Facts(config, effects, scale);
  return [
    ...configChecks(load),
    privilegeCheck(effects, config),
    ...accountChecks(config, facts),
    ...iptablesChecks(config, facts),
    ...binaryChecks(config, facts),
    ...identityChecks(config, facts),
    ...networkChecks(config, facts),
    ...portChecks(config, facts),
    ...controlPlaneChecks(config, facts),
    ...daemonChecks(config, facts),
  ];
}
