/** From configuration to the desired rulesets: the effects (account lookups) before the pure render. */
import type { HarnessConfig } from '../config/types.ts';
import { ConfigError } from '../util/errors.ts';
import { resolveGroup, resolveUser } from '../util/users.ts';
import { renderInputFor, renderRuleset, type RenderInput } from './render.ts';
import type { Family, Ruleset } from './ruleset.ts';
import { sshdPorts } from './sshd.ts';

/**
 * Resolves proxy.user and proxy.group to ids and reads sshd's ports. A missing account is
 * a configuration error: rendering owner matches for an account that does not exist would
 * redirect the proxy's own traffic back into itself.
 */
export async function resolveRenderInput(config: Pick<HarnessConfig, 'proxy' | 'iptables'>, sshdConfigDir?: string): Promise<RenderInput> {
  // Both are looked up even when one fails, so a config with two bad accounts says so at once.
  const [user, group] = await Promise.allSettled([resolveUser(config.proxy.user), resolveGroup(config.proxy.group)]);
  if (user.status === 'rejected' || group.status === 'rejected') throw combined([user, group]);
  return renderInputFor(config, { proxyUid: user.value.uid, harnessGid: group.value.gid, sshdPorts: sshdPorts(sshdConfigDir) });
}

function combined(results: PromiseSettledResult<unknown>[]): Error {
  const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
  if (errors.every((e) => e instanceof ConfigError)) return new ConfigError(errors.flatMap((e) => (e as ConfigError).problems));
  return errors.find((e) => !(e instanceof ConfigError))!;
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
