/** What iptables-save says is in table nat right now, parsed into the shape of a Ruleset. */
import { TABLE, tokenize, type Rule } from './ruleset.ts';

export interface ObservedTable {
  /** Every chain in the table, built-in and user-defined, in the order printed. */
  chains: string[];
  /** Rules per chain, in order. */
  rules: Map<string, Rule[]>;
}

export function emptyTable(): ObservedTable {
  return { chains: [], rules: new Map() };
}

/**
 * Parses `iptables-save -t nat` output. Other tables in the text are skipped; lines that
 * are neither a chain nor a rule (comments, warnings about other backends) are ignored.
 */
export function parseSave(text: string): ObservedTable {
  const table = emptyTable();
  let inTable = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      inTable = line.slice(1) === TABLE;
      continue;
    }
    if (!inTable || line === '' || line.startsWith('#')) continue;
    if (line === 'COMMIT') {
      inTable = false;
      continue;
    }
    if (line.startsWith(':')) {
      const name = line.slice(1).split(/\s+/)[0]!;
      if (!table.rules.has(name)) {
        table.chains.push(name);
        table.rules.set(name, []);
      }
      continue;
    }
    const tokens = tokenize(line);
    if (tokens[0] !== '-A' || tokens[1] === undefined) continue;
    const chain = tokens[1];
    if (!table.rules.has(chain)) {
      table.chains.push(chain);
      table.rules.set(chain, []);
    }
    table.rules.get(chain)!.push({ chain, args: tokens.slice(2) });
  }
  return table;
}
