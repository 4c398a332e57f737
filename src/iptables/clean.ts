/** `mesh-harness iptables clean`: remove what the harness owns, wherever it may be installed. */
import type { HarnessConfig } from '../config/types.ts';
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
 * Removes the owned chains and jumps from every family the kernel has. With backend
 * `auto` both backends are cleaned, because rules installed before a backend switch would
 * otherwise stay behind; legacy tables that are not loaded cannot hold rules and are not
 * touched (reading them would load their modules).
 */
export async function cleanInstalled(runner: CommandRunner, settings: Pick<HarnessConfig['iptables'], 'backend'>): Promise<CleanResult[]> {
  const families: Family[] = (await kernelHasIpv6(runner)) ? ['ipv4', 'ipv6'] : ['ipv4'];
  const modes: BackendMode[] = settings.backend === 'auto' ? ['nft', 'legacy'] : [settings.backend];
  const results: CleanResult[] = [];
  let found = false;
  for (const mode of modes) {
    for (const family of families) {
      const tools = await findTools(runner, mode, family);
      if (!tools) continue;
      found = true;
      if (mode === 'legacy' && settings.backend === 'auto' && !(await legacyTablesLoaded(runner, family))) continue;
      const { drift } = await new NatTable(runner, tools).converge(undefined);
      results.push({ mode, family, removed: drift });
    }
  }
  if (!found) throw missingProgram('iptables-restore', `needed to remove rules with the ${modes.join(' or ')} backend`);
  return results;
}
