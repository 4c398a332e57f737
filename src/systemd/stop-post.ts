/**
 * What the unit's ExecStopPost decides: whether the redirect rules may outlive the
 * harness that just stopped. Rules without a running proxy send every outbound TCP
 * connection to a port where nothing listens, so they may stay only while systemd is
 * about to start the harness again: a clean stop (`$SERVICE_RESULT` is `success`) by a
 * restart job (`systemctl restart`, a package upgrade's `try-restart`, an Ansible
 * handler). A failure, a kill, a timeout, or a stop that is not a restart removes them.
 */
import type { CommandRunner } from '../iptables/runner.ts';

export type StopOutcome =
  | { keep: true; reason: string }
  | { keep: false; reason: string };

/** The type of each job systemd lists for `unit` (`systemctl list-jobs --plain`: id, unit, type, state). */
export function jobTypes(listJobs: string, unit: string): string[] {
  return listJobs
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[1] === unit && fields[2] !== undefined)
    .map((fields) => fields[2]!);
}

/** Pure: the decision from the stop's result and the jobs queued for the unit. */
export function stopOutcome(serviceResult: string | undefined, jobs: readonly string[], unit: string): StopOutcome {
  if (serviceResult === undefined || serviceResult === '') {
    return { keep: false, reason: `no $SERVICE_RESULT (not run as ${unit}'s ExecStopPost)` };
  }
  if (serviceResult !== 'success') return { keep: false, reason: `${unit} ended with result "${serviceResult}"` };
  if (jobs.includes('restart')) return { keep: true, reason: `${unit} stopped cleanly and is being restarted` };
  return { keep: false, reason: `${unit} stopped and is not being restarted` };
}

/** Asks systemd for the unit's jobs (only when the stop was clean: nothing else needs them). */
export async function decideAfterStop(unit: string, env: NodeJS.ProcessEnv, runner: CommandRunner): Promise<StopOutcome> {
  if (env.SERVICE_RESULT !== 'success') return stopOutcome(env.SERVICE_RESULT, [], unit);
  const listed = await runner.run(['systemctl', 'list-jobs', '--no-legend', '--plain', '--no-pager', unit], { timeoutMs: 10_000 }).catch(() => undefined);
  // Cannot tell whether a restart follows: never leave rules on a guess.
  if (!listed || listed.exitCode !== 0) return { keep: false, reason: `cannot ask systemd whether ${unit} is restarting (systemctl list-jobs failed)` };
  return stopOutcome(env.SERVICE_RESULT, jobTypes(listed.stdout, unit), unit);
}
