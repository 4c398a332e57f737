/**
 * Which iptables programs to run: the nft or the legacy backend (they keep separate rule
 * sets in the kernel, so using the wrong one installs rules that do nothing), and whether
 * IPv6 is managed too.
 */
import type { HarnessConfig } from '../config/types.ts';
import { missingProgram } from './errors.ts';
import type { CommandRunner } from './runner.ts';
import type { Family } from './ruleset.ts';

export type BackendMode = 'nft' | 'legacy';

export interface FamilyTools {
  family: Family;
  save: string;
  restore: string;
}

export interface Backend {
  mode: BackendMode;
  /** Why this backend, for logs and `status`. */
  reason: string;
  /** The families managed, IPv4 first. */
  families: FamilyTools[];
}

function programBase(family: Family): string {
  return family === 'ipv4' ? 'iptables' : 'ip6tables';
}

async function versionMode(runner: CommandRunner, program: string): Promise<BackendMode | undefined> {
  const result = await runner.run([program, '--version'], { timeoutMs: 5000 }).catch(() => undefined);
  if (!result || result.exitCode !== 0) return undefined;
  return /nf_tables/.test(result.stdout) ? 'nft' : 'legacy';
}

/**
 * The save/restore pair of one backend and family: the suffixed names Debian, Ubuntu and
 * RHEL install, or the plain names when they are of that backend (older hosts).
 */
export async function findTools(runner: CommandRunner, mode: BackendMode, family: Family): Promise<FamilyTools | undefined> {
  const base = programBase(family);
  const save = runner.which(`${base}-${mode}-save`);
  const restore = runner.which(`${base}-${mode}-restore`);
  if (save && restore) return { family, save, restore };
  const plainSave = runner.which(`${base}-save`);
  const plainRestore = runner.which(`${base}-restore`);
  if (plainSave && plainRestore && (await versionMode(runner, plainRestore)) === mode) return { family, save: plainSave, restore: plainRestore };
  return undefined;
}

async function readProc(runner: CommandRunner, path: string): Promise<string | undefined> {
  const result = await runner.run(['cat', path], { timeoutMs: 5000 });
  return result.exitCode === 0 ? result.stdout : undefined;
}

async function ruleCount(runner: CommandRunner, save: string): Promise<number> {
  const result = await runner.run([save], { timeoutMs: 10_000 });
  return result.exitCode === 0 ? result.stdout.split('\n').filter((l) => l.startsWith('-A ')).length : 0;
}

/**
 * `auto` picks the backend that already holds rules (like Kubernetes' iptables-wrapper):
 * a host whose firewall lives in legacy tables must get our rules there too. With no rules
 * anywhere, the system's default `iptables` decides, and nft when there is none.
 */
async function detectMode(runner: CommandRunner): Promise<{ mode: BackendMode; reason: string }> {
  const nft = await findTools(runner, 'nft', 'ipv4');
  const legacy = await findTools(runner, 'legacy', 'ipv4');
  if (!nft && !legacy) throw missingProgram('iptables-restore', 'neither the nft nor the legacy backend is installed');
  if (!legacy) return { mode: 'nft', reason: 'auto: only the nft backend is installed' };
  if (!nft) return { mode: 'legacy', reason: 'auto: only the legacy backend is installed' };

  // Reading legacy tables loads their kernel modules; only look when they are loaded already.
  const legacyLoaded = ((await readProc(runner, '/proc/net/ip_tables_names')) ?? '').trim() !== '';
  const legacyRules = legacyLoaded ? await ruleCount(runner, legacy.save) : 0;
  const nftRules = await ruleCount(runner, nft.save);
  if (legacyRules > nftRules) return { mode: 'legacy', reason: `auto: legacy tables hold ${legacyRules} rules, nft ${nftRules}` };
  if (nftRules > 0) return { mode: 'nft', reason: `auto: nft holds ${nftRules} rules, legacy ${legacyRules}` };
  const plain = runner.which('iptables');
  const systemDefault = plain ? await versionMode(runner, plain) : undefined;
  return { mode: systemDefault ?? 'nft', reason: `auto: no rules yet, ${systemDefault ? 'the system default' : 'nft by default'}` };
}

/** Whether the kernel (of the runner's network namespace) has IPv6 at all. */
export async function kernelHasIpv6(runner: CommandRunner): Promise<boolean> {
  return (await readProc(runner, '/proc/net/if_inet6')) !== undefined;
}

/** The families to manage: IPv6 as the loader decided it (config.host.ipv6), the same decision the proxy environment reads. */
export function managedFamilies(ipv6: boolean): Family[] {
  return ipv6 ? ['ipv4', 'ipv6'] : ['ipv4'];
}

/** Resolves the backend and the programs for each managed family. */
export async function resolveBackend(runner: CommandRunner, settings: { backend: HarnessConfig['iptables']['backend']; ipv6: boolean }): Promise<Backend> {
  const { mode, reason } = settings.backend === 'auto' ? await detectMode(runner) : { mode: settings.backend, reason: 'configured' };
  const families: FamilyTools[] = [];
  for (const family of managedFamilies(settings.ipv6)) {
    const tools = await findTools(runner, mode, family);
    if (!tools) {
      const base = programBase(family);
      throw missingProgram(`${base}-${mode}-restore`, `${family} with the ${mode} backend${family === 'ipv6' ? '; or set iptables.ipv6 to off' : ''}`);
    }
    families.push(tools);
  }
  return { mode, reason, families };
}
