/** From configuration to the desired rulesets: the effects (account lookups) before the pure render. */
import { ConfigError } from '../config/load.ts';
import type { HarnessConfig } from '../config/types.ts';
import { resolveGroup, resolveUser, UnknownAccountError } from '../util/users.ts';
import { renderInputFor, renderRuleset, type RenderInput } from './render.ts';
import type { Family, Ruleset } from './ruleset.ts';

/**
 * Resolves proxy.user and proxy.group to ids. A missing account is a configuration error:
 * rendering owner matches for an account that does not exist would redirect the proxy's
 * own traffic back into itself.
 */
export async function resolveRenderInput(config: Pick<HarnessConfig, 'proxy' | 'iptables'>): Promise<RenderInput> {
  try {
    const [user, group] = await Promise.all([resolveUser(config.proxy.user), resolveGroup(config.proxy.group)]);
    return renderInputFor(config, { proxyUid: user.uid, harnessGid: group.gid });
  } catch (err) {
    if (err instanceof UnknownAccountError) throw new ConfigError([`proxy.${err.kind}: got ${JSON.stringify(err.account)}; ${err.message}`]);
    throw err;
  }
}

export function desiredRulesets(input: RenderInput, families: readonly Family[]): Map<Family, Ruleset> {
  return new Map(families.map((family) => [family, renderRuleset(input, family)]));
}
