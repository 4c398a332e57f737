import { adminClientHost, fetchAdminStatus } from '../../admin/client.ts';
import type { AdminStatus } from '../../admin/server.ts';
import { formatDuration, parseDuration } from '../../util/duration.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { configOptions, parseCommandArgs, write, type Command } from '../command.ts';
import { loadCommandConfig } from '../command-config.ts';

function age(since: string): string {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  return `${Math.round(seconds / 3600)}h`;
}

interface ProbeRow {
  name: string;
  source: string;
  passing: boolean;
  lastResult: string;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
  lastLatencyMs?: number;
  message: string;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
}

/** The probes component's detail: the workload's readiness, each probe, and what was refused. */
function renderProbes(detail: Record<string, unknown>): string[] {
  const lines: string[] = [];
  const workload = detail.workload as { ready: boolean; reason?: string; message: string } | undefined;
  if (workload) lines.push('', `workload: ${workload.ready ? 'READY' : `NOT READY (${workload.reason})`}: ${workload.message}`);
  const probes = (detail.probes as ProbeRow[] | undefined) ?? [];
  if (probes.length) {
    const rows = probes.map((p) => [
      p.name,
      p.source,
      p.passing ? 'passing' : 'failing',
      p.lastResult,
      `${p.consecutiveSuccesses}/${p.consecutiveFailures}`,
      p.lastLatencyMs === undefined ? '-' : `${p.lastLatencyMs}ms`,
      p.message,
    ]);
    lines.push('', ...table(['PROBE', 'SOURCE', 'VERDICT', 'LAST', 'OK/FAIL IN A ROW', 'LATENCY', 'SAW'], rows));
  }
  for (const refusal of (detail.refusals as Array<{ message: string }> | undefined) ?? []) lines.push(`refused: ${refusal.message}`);
  const runner = detail.runner as { phase: string; message: string; uid?: number; gid?: number } | undefined;
  if (runner && runner.phase !== 'Stopped') lines.push(`probe runner: ${runner.phase}: ${runner.message}${runner.uid === undefined ? '' : ` as uid ${runner.uid} gid ${runner.gid}`}`);
  return lines;
}

export function renderStatusTable(status: AdminStatus): string {
  const lines = [`mesh-harness ${status.version} (pid ${status.pid}): ${status.ready ? 'READY' : 'NOT READY'}`, `status: ${status.status}`, ''];
  const rows = status.components.map((c) => [c.name, c.phase, age(c.since), c.message + (c.lastError && !c.ready ? ` (last error: ${c.lastError})` : '')]);
  lines.push(...table(['COMPONENT', 'PHASE', 'SINCE', 'MESSAGE'], rows));
  const probes = status.components.find((c) => c.name === 'probes');
  if (probes?.detail) lines.push(...renderProbes(probes.detail));
  return lines.join('\n');
}

/** How long `status --wait` waits by default: longer than the unit's start (READY=1 comes within about a minute). */
const DEFAULT_WAIT_MS = 120_000;
const POLL_MS = 1000;

export const statusCommand: Command = {
  name: 'status',
  usage: 'mesh-harness status [--json] [--config PATH] [--wait [--timeout 2m]]',
  async run(args, io) {
    const { values } = parseCommandArgs(this, args, { ...configOptions, json: { type: 'boolean' }, wait: { type: 'boolean' }, timeout: { type: 'string' } });
    let waitMs = 0;
    if (values.timeout !== undefined) {
      const parsed = parseDuration(values.timeout);
      if (!values.wait || parsed === undefined || parsed < 1000) throw new CliError(`mesh-harness status: --timeout goes with --wait and is a duration of at least 1s, such as 30s or 5m; got "${values.timeout}"\nusage: ${this.usage}`, EXIT.USAGE);
      waitMs = parsed;
    } else if (values.wait) waitMs = DEFAULT_WAIT_MS;
    const { config } = loadCommandConfig(values, io);
    const host = adminClientHost(config.admin);
    // --wait: until the daemon answers ready (a restart, a rollout step), at most waitMs;
    // not answering yet is part of starting.
    const deadline = Date.now() + waitMs;
    let status: AdminStatus | undefined;
    let lastError = '';
    for (;;) {
      try {
        status = await fetchAdminStatus(host, config.admin.port, 3000);
        lastError = '';
      } catch (err) {
        status = undefined;
        lastError = (err as Error).message;
      }
      if (status?.ready || Date.now() + POLL_MS > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    if (!status) {
      const waited = waitMs ? ` within ${formatDuration(waitMs)}` : '';
      throw new CliError(`no mesh-harness daemon answers on ${host}:${config.admin.port}${waited} (${lastError}); is it running? try: systemctl status mesh-harness`, EXIT.UNAVAILABLE);
    }
    write(io.stdout, values.json ? JSON.stringify(status, null, 2) : renderStatusTable(status));
    if (!status.ready && waitMs) write(io.stderr, `mesh-harness status: not ready after ${formatDuration(waitMs)}; the components above say what they wait for`);
    return status.ready ? EXIT.OK : EXIT.FAILURE;
  },
};
