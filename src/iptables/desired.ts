/** From configuration to the desired rulesets: the effects (account lookups) before the pure render. */
import { ConfigError } from '../config/load.ts';
import type { HarnessConfig } from '../config/types.ts';
import { resolveGroup, resolveUser, UnknownAccountError } from '../util/users.ts';
import { renderInputFor, renderRuleset, type RenderInput } from './render.ts';
import type { Family, Ruleset } from './ruleset.ts';
import { sshdPorts } from './sshd.ts';

/**
 * Resolves proxy.user and proxy.group to ids and reads sshd's ports. A missing account is
 * a configuration error: rendering owner matches for an account that does not exist would
 * redirect the proxy's own traffic back into itself.
 */
export async function resolveRenderInput(config: Pick<HarnessConfig, 'proxy' | 'iptables'>, sshdConfigDir?: string): Promise<RenderInput> {
  try {
    const [user, group] = await Promise.all([resolveUser(config.proxy.user), resolveGroup(config.proxy.group)]);
    return renderInputFor(config, { proxyUid: user.uid, harnessGid: group.gid, sshdPorts: sshdPorts(sshdConfigDir) });
  } catch (err) {
    if (err instanceof UnknownAccountError) throw new ConfigError([`proxy.${err.kind}: got ${JSON.stringify(err.account)}; ${err.message}`]);
    throw err;
  }
}

/**
 * The rulesets to converge on. Until `redirect` (the proxy has answered ready once), the
 * owned chains are prepared but nothing jumps into them: no connection is sent to a proxy
 * that is not there, so a machine that cannot get its identity keeps all its traffic.
 */
export function desiredRulesets(input: RenderInput, families: readonly Family[], options: { redirect?: boolean } = {}): Map<Family, Ruleset> {
  const redirect = options.redirect ?? true;
  return new Map(families.map((family) => {
    const ruleset = renderRuleset(input, family);
    return [family, redirect ? ruleset : { ...ruleset, jumps: [] }];
  }));
}
