/**
 * The ruleset as data. A rule is the argument list iptables-save prints after
 * "-A <chain>", so what we render and what we observe compare token by token, with no
 * second parser in between that could disagree with iptables about what a rule means.
 */

export type Family = 'ipv4' | 'ipv6';

export const FAMILIES: readonly Family[] = ['ipv4', 'ipv6'];

/** Every chain the harness owns starts with this; nothing else on the host does. */
export const CHAIN_PREFIX = 'MESH_HARNESS_';
export const INBOUND_CHAIN = 'MESH_HARNESS_INBOUND';
export const OUTBOUND_CHAIN = 'MESH_HARNESS_OUTBOUND';
/** The start of every comment the harness puts on its rules. */
export const COMMENT_TAG = 'mesh-harness';
/** The harness only ever writes to this table. */
export const TABLE = 'nat';

export interface Rule {
  chain: string;
  /** Tokens after "-A <chain>", unquoted, exactly as iptables-save prints them. */
  args: string[];
}

/** The desired state of table nat for one address family. */
export interface Ruleset {
  family: Family;
  /** Owned chains, in declaration order. */
  chains: string[];
  /** Rules inside the owned chains, in order. */
  rules: Rule[];
  /** Rules in built-in chains that enter the owned chains; they must come first in their chains, in this order. */
  jumps: Rule[];
}

export function isOwnedChain(chain: string): boolean {
  return chain.startsWith(CHAIN_PREFIX);
}

/** The chain a rule jumps or goes to, if any. */
export function ruleTarget(rule: Rule): string | undefined {
  for (let i = 0; i < rule.args.length - 1; i++) {
    if (rule.args[i] === '-j' || rule.args[i] === '-g' || rule.args[i] === '--jump' || rule.args[i] === '--goto') return rule.args[i + 1];
  }
  return undefined;
}

/** A rule outside the owned chains is ours when it enters one of them. */
export function isOwnedRule(rule: Rule): boolean {
  if (isOwnedChain(rule.chain)) return true;
  const target = ruleTarget(rule);
  return target !== undefined && isOwnedChain(target);
}

/** Identity of a rule for comparison: chain and tokens, immune to quoting differences. */
export function ruleKey(rule: Rule): string {
  return JSON.stringify([rule.chain, ...rule.args]);
}

function quoteToken(token: string): string {
  if (token !== '' && !/[\s"'\\]/.test(token)) return token;
  return `"${token.replace(/["'\\]/g, (c) => `\\${c}`)}"`;
}

/** The rule's arguments as one line of iptables-restore input. */
export function formatArgs(args: string[]): string {
  return args.map(quoteToken).join(' ');
}

/** "-A CHAIN args" as iptables-save prints it. */
export function formatRule(rule: Rule): string {
  return `-A ${rule.chain} ${formatArgs(rule.args)}`;
}

/**
 * Splits one iptables-save line into tokens the way iptables-restore does: double quotes
 * group words, a backslash escapes the next character.
 */
export function tokenize(line: string): string[] {
  const tokens: string[] = [];
  let current = '';
  let inToken = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      current += line[++i];
      inToken = true;
    } else if (c === '"') {
      quoted = !quoted;
      inToken = true;
    } else if (!quoted && /\s/.test(c)) {
      if (inToken) tokens.push(current);
      current = '';
      inToken = false;
    } else {
      current += c;
      inToken = true;
    }
  }
  if (quoted) throw new Error(`unbalanced quote in iptables rule: ${line}`);
  if (inToken) tokens.push(current);
  return tokens;
}

/**
 * The ruleset as iptables-restore input that installs it on a table that has none of it:
 * owned chains declared, filled, and entered from position 1 of the built-in chains.
 */
export function renderRestore(ruleset: Ruleset): string {
  const lines = [`*${TABLE}`, ...ruleset.chains.map((c) => `:${c} - [0:0]`), ...ruleset.rules.map(formatRule)];
  lines.push(...jumpInsertions(ruleset.jumps), 'COMMIT', '');
  return lines.join('\n');
}

/**
 * "-I CHAIN 1" lines that leave the jumps first in their chains in the listed order:
 * several jumps into one chain are inserted last to first.
 */
export function jumpInsertions(jumps: Rule[]): string[] {
  const chains = [...new Set(jumps.map((j) => j.chain))];
  return chains.flatMap((chain) =>
    jumps
      .filter((j) => j.chain === chain)
      .reverse()
      .map((j) => `-I ${chain} 1 ${formatArgs(j.args)}`),
  );
}
