/**
 * `mesh-harness iptables clean`: remove what the harness owns, wherever it may be
 * installed, by its marks alone (chains named MESH_HARNESS_*, and the jumps into them).
 * It reads no configuration: it is what runs when the configuration is broken (a failed
 * start, a downgrade, a removal), so a broken file must never keep the rules in place.
 */
import { findTools, kernelHasIpv6, type BackendMode } from './backend.ts';
import type { DriftItem } from './drift.ts';
import { missingProgram } from './errors.ts';
import { NatTable } from './nat-table.ts';
import type { CommandRunner } from './runner.ts';
import type { Family } from './ruleset.ts';

export interface CleanResult {
  mode: BackendMode;
  family: Family;
  /** What was removed; empty when nothing was installed. */
  removed: DriftItem[];
}

async function legacyTablesLoaded(runner: CommandRunner, family: Family): Promise<boolean> {
  const result = await runner.run(['cat', family === 'ipv4' ? '/proc/net/ip_tables_names' : '/proc/net/ip6_tables_names'], { timeoutMs: 5000 });
  return result.exitCode === 0 && result.stdout.trim() !== '';
}

/**
 * Removes the owned chains and jumps from every backend and family the host has. Both
 * backends are cleaned, because rules installed before a backend switch (or by a
 * configuration that named the other one) would otherwise stay behind; legacy tables that
 * are not loaded cannot hold rules and are not touched (reading them would load their
 * modules).
 */
export async function cleanInstalled(runner: CommandRunner): Promise<CleanResult[]> {
  const families: Family[] = (await kernelHasIpv6(runner)) ? ['ipv4', 'ipv6'] : ['ipv4'];
  const modes: BackendMode[] = ['nft', 'legacy'];
  const results: CleanResult[] = [];
  let found = false;
  for (const mode of modes) {
    for (const family of families) {
      const tools = await findTools(runner, mode, family);
      if (!tools) continue;
      found = true;
      if (mode === 'legacy' && !(await legacyTablesLoaded(runner, family))) continue;
      const { drift } = await new NatTable(runner, tools).converge(undefined);
      results.push({ mode, family, removed: drift });
    }
  }
  if (!found) throw missingProgram('iptables-restore', 'needed to remove rules with the nft or the legacy backend');
  return results;
}

/** What `cleanInstalled` removed, one line per backend and family and one per rule or chain. */
export function describeClean(results: CleanResult[]): string[] {
  return results.flatMap(({ mode, family, removed }) => {
    const where = `${family} (${mode} backend)`;
    return removed.length === 0 ? [`${where}: nothing installed`] : [`${where}: removed`, ...removed.map((d) => `  ${d.rule ?? `chain ${d.chain}`}`)];
  });
}
