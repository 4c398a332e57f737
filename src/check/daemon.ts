/**
 * Daemon area: when a harness is running (its admin API answers), its /status, one line
 * per component. Not running is not a failure: `check` is also the preflight before start.
 */
import type { HarnessConfig } from '../config/types.ts';
import { ok, skip, warn, type Check, type Outcome, type SubOutcome } from './check.ts';
import { DAEMON_TIMEOUT_MS, type Facts } from './facts.ts';

const FAILED_PHASES = new Set(['Failed', 'CrashLoop']);

export function daemonChecks(config: HarnessConfig, facts: Facts): Check[] {
  return [
    {
      id: 'daemon.status',
      area: 'daemon',
      name: `the running harness reports its components ready (admin API on port ${config.admin.port})`,
      timeoutMs: DAEMON_TIMEOUT_MS + 500,
      timeoutHint: 'the admin API accepted the connection but did not answer; is the harness hung? (systemctl status mesh-harness)',
      async run(): Promise<Outcome | SubOutcome[]> {
        const daemon = await facts.daemon();
        if (!daemon.running) {
          if (daemon.answeredWrongly) {
            return warn(`${daemon.host}:${daemon.port} did not give mesh-harness status: ${daemon.reason}`, 'another program may hold admin.port (see the port checks), or the harness is hung: systemctl status mesh-harness');
          }
          return skip(`no harness answers on ${daemon.host}:${daemon.port} (not running); start it with systemctl start mesh-harness`);
        }
        const { status } = daemon;
        const lines: SubOutcome[] = [
          {
            subject: 'harness',
            name: `mesh-harness ${status.version} (pid ${status.pid})`,
            ...(status.ready ? ok(status.status) : warn(`not ready: ${status.status}`, 'see the components below and mesh-harness status; docs/operations.md explains each phase')),
          },
        ];
        for (const component of status.components) {
          const message = `${component.phase}: ${component.message}${component.lastError && !component.ready ? ` (last error: ${component.lastError})` : ''}`;
          const hint = `journalctl -u mesh-harness -o cat | jq 'select(.component=="${component.name}")'`;
          const verdict = component.ready ? ok(message) : FAILED_PHASES.has(component.phase) ? { verdict: 'fail' as const, message, hint } : warn(message, hint);
          lines.push({ subject: component.name, name: `component ${component.name}`, ...verdict });
        }
        return lines;
      },
    },
  ];
}
