/**
 * Drift: how the owned part of table nat differs from the desired ruleset, and the one
 * iptables-restore transaction that removes the difference. Both are pure.
 *
 * What the harness owns: chains named MESH_HARNESS_*, and rules anywhere else in table nat
 * whose target is one of those chains (the jumps). Everything else is foreign and is never
 * named in a transaction, so iptables-restore --noflush leaves it byte for byte as it was.
 *
 * Ordering: the jumps must be the first rules of their built-in chains. A foreign rule in
 * front could RETURN, DNAT or REDIRECT the connection before the harness sees it, and
 * "first" is the one position that needs no judgement about what a foreign rule does.
 */
import type { ObservedTable } from './observe.ts';
import { TABLE, formatArgs, formatRule, isOwnedChain, isOwnedRule, jumpInsertions, ruleKey, type Rule, type Ruleset } from './ruleset.ts';

export type DriftKind =
  | 'missing-chain'
  | 'stale-chain'
  | 'missing-rule'
  | 'extra-rule'
  | 'reordered-rules'
  | 'missing-jump'
  | 'duplicate-jump'
  | 'displaced-jump'
  | 'stale-jump';

export interface DriftItem {
  kind: DriftKind;
  chain: string;
  /** The rule concerned, as iptables-save prints it. */
  rule?: string;
  /** For a displaced jump: its position (1-based) and the foreign rule now first. */
  position?: number;
  ahead?: string;
}

function countKeys(rules: Rule[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const rule of rules) counts.set(ruleKey(rule), (counts.get(ruleKey(rule)) ?? 0) + 1);
  return counts;
}

function chainDrift(chain: string, desired: Rule[], observed: Rule[]): DriftItem[] {
  const items: DriftItem[] = [];
  const want = countKeys(desired);
  const have = countKeys(observed);
  const seen = new Set<string>();
  for (const rule of desired) {
    const key = ruleKey(rule);
    if (seen.has(key)) continue;
    seen.add(key);
    for (let n = have.get(key) ?? 0; n < want.get(key)!; n++) items.push({ kind: 'missing-rule', chain, rule: formatRule(rule) });
  }
  for (const rule of observed) {
    const key = ruleKey(rule);
    if ((want.get(key) ?? 0) > 0) want.set(key, want.get(key)! - 1);
    else items.push({ kind: 'extra-rule', chain, rule: formatRule(rule) });
  }
  if (items.length === 0 && desired.some((rule, i) => ruleKey(rule) !== ruleKey(observed[i]!))) {
    items.push({ kind: 'reordered-rules', chain });
  }
  return items;
}

/**
 * Differences between the desired ruleset (undefined: nothing should be installed) and the
 * observed table. An empty list means converged.
 */
export function computeDrift(desired: Ruleset | undefined, observed: ObservedTable): DriftItem[] {
  const items: DriftItem[] = [];
  const desiredChains = new Set(desired?.chains ?? []);
  for (const chain of desired?.chains ?? []) {
    const rules = observed.rules.get(chain);
    const wanted = desired!.rules.filter((r) => r.chain === chain);
    if (rules === undefined) items.push({ kind: 'missing-chain', chain });
    else items.push(...chainDrift(chain, wanted, rules));
  }
  for (const chain of observed.chains) {
    if (isOwnedChain(chain) && !desiredChains.has(chain)) items.push({ kind: 'stale-chain', chain });
  }

  const desiredJumps = new Map<string, Rule>((desired?.jumps ?? []).map((j) => [ruleKey(j), j]));
  for (const chain of observed.chains) {
    if (isOwnedChain(chain)) continue;
    const rules = observed.rules.get(chain) ?? [];
    rules.forEach((rule, index) => {
      if (!isOwnedRule(rule)) return;
      const key = ruleKey(rule);
      if (!desiredJumps.has(key)) {
        items.push({ kind: 'stale-jump', chain, rule: formatRule(rule) });
        return;
      }
      const first = rules.findIndex((r) => ruleKey(r) === key);
      if (first !== index) items.push({ kind: 'duplicate-jump', chain, rule: formatRule(rule), position: index + 1 });
    });
  }
  const placed = new Map<string, number>();
  for (const jump of desired?.jumps ?? []) {
    const rules = observed.rules.get(jump.chain) ?? [];
    const expected = placed.get(jump.chain) ?? 0;
    placed.set(jump.chain, expected + 1);
    const index = rules.findIndex((r) => ruleKey(r) === ruleKey(jump));
    if (index < 0) items.push({ kind: 'missing-jump', chain: jump.chain, rule: formatRule(jump) });
    else if (index !== expected) items.push({ kind: 'displaced-jump', chain: jump.chain, rule: formatRule(jump), position: index + 1, ahead: formatRule(rules[expected]!) });
  }
  return items;
}

/** One line per drift item, for logs and `iptables diff`. */
export function describeDrift(item: DriftItem): string {
  switch (item.kind) {
    case 'missing-chain': return `chain ${item.chain} is missing`;
    case 'stale-chain': return `chain ${item.chain} is not in the desired ruleset`;
    case 'missing-rule': return `missing in ${item.chain}: ${item.rule}`;
    case 'extra-rule': return `unexpected in ${item.chain}: ${item.rule}`;
    case 'reordered-rules': return `rules of ${item.chain} are out of order`;
    case 'missing-jump': return `jump missing from ${item.chain}: ${item.rule}`;
    case 'duplicate-jump': return `duplicate jump at ${item.chain} position ${item.position}: ${item.rule}`;
    case 'displaced-jump': return `jump is at ${item.chain} position ${item.position}, behind: ${item.ahead}`;
    case 'stale-jump': return `jump not in the desired ruleset: ${item.rule}`;
  }
}

/**
 * The iptables-restore --noflush input that turns the observed table into the desired one
 * (undefined desired: removes everything owned). Declaring an owned chain creates it or
 * flushes it, so its rules are replaced whole; existing jumps are deleted by their exact
 * text and the desired ones inserted at position 1, all in one transaction. Returns
 * undefined when there is nothing to do.
 */
export function planTransaction(desired: Ruleset | undefined, observed: ObservedTable): string | undefined {
  if (computeDrift(desired, observed).length === 0) return undefined;
  const desiredChains = new Set(desired?.chains ?? []);
  const stale = observed.chains.filter((c) => isOwnedChain(c) && !desiredChains.has(c));
  const lines = [`*${TABLE}`, ...[...desiredChains].map((c) => `:${c} - [0:0]`)];
  for (const chain of observed.chains) {
    if (isOwnedChain(chain)) continue;
    for (const rule of observed.rules.get(chain) ?? []) {
      if (isOwnedRule(rule)) lines.push(`-D ${chain} ${formatArgs(rule.args)}`);
    }
  }
  for (const chain of stale) lines.push(`-F ${chain}`);
  for (const chain of stale) lines.push(`-X ${chain}`);
  for (const rule of desired?.rules ?? []) lines.push(formatRule(rule));
  lines.push(...jumpInsertions(desired?.jumps ?? []), 'COMMIT', '');
  return lines.join('\n');
}
