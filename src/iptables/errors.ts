/**
 * Failures of the iptables programs, turned into messages that name the cause and the fix.
 * The ones the operator must fix on the host (missing program, missing privilege, missing
 * kernel module) are IptablesUnavailableError, which the CLI maps to exit 69.
 */
import { UnavailableError } from '../util/errors.ts';

export class IptablesUnavailableError extends UnavailableError {}

/** iptables-restore or iptables-save failed for a reason not in the list below. */
export class IptablesCommandError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'IptablesCommandError';
  }
}

export function missingProgram(program: string, why: string): IptablesUnavailableError {
  return new IptablesUnavailableError(
    `${program} not found on PATH (${why}); install iptables (apt-get install iptables, or dnf install iptables-nft) or set iptables.backend to the backend this host has`,
  );
}

const KNOWN_CAUSES: Array<{ pattern: RegExp; explain: (program: string) => string }> = [
  {
    pattern: /you must be root|Permission denied|Operation not permitted/i,
    explain: (program) => `${program} was refused: managing netfilter rules needs CAP_NET_ADMIN; run as root (the mesh-harness service does) or grant CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN)`,
  },
  {
    pattern: /load match [`']owner'|Extension owner .*not supported|owner: .*(No such file|not found)/i,
    explain: (program) => `${program}: the kernel has no owner match, which keeps the proxy's own traffic from being redirected; load it with "modprobe xt_owner" (kernel option CONFIG_NETFILTER_XT_MATCH_OWNER)`,
  },
  {
    pattern: /load target [`']REDIRECT'|Extension REDIRECT .*not supported/i,
    explain: (program) => `${program}: the kernel has no REDIRECT target; load it with "modprobe xt_REDIRECT" (kernel option CONFIG_NETFILTER_XT_TARGET_REDIRECT)`,
  },
  {
    pattern: /load match [`']multiport'|Extension multiport .*not supported/i,
    explain: (program) => `${program}: the kernel has no multiport match; load it with "modprobe xt_multiport"`,
  },
  {
    pattern: /load match [`']comment'|Extension comment .*not supported/i,
    explain: (program) => `${program}: the kernel has no comment match; load it with "modprobe xt_comment"`,
  },
  {
    pattern: /table [`']?nat'? does not exist|can't initialize ip6?tables table [`']nat'/i,
    explain: (program) => `${program}: the kernel has no nat table for this family; load it with "modprobe iptable_nat" (IPv6: "modprobe ip6table_nat"), or set iptables.ipv6 to off if IPv6 is not used`,
  },
];

/** The error for a failed iptables program run, from its output. */
export function classifyFailure(program: string, exitCode: number, stderr: string): Error {
  for (const cause of KNOWN_CAUSES) {
    if (cause.pattern.test(stderr)) return new IptablesUnavailableError(cause.explain(program));
  }
  const detail = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('# Warning'))
    .join('; ');
  return new IptablesCommandError(`${program} failed (exit ${exitCode}): ${detail || 'no error output'}`, stderr);
}
