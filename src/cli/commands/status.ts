import { adminClientHost, fetchAdminStatus } from '../../admin/client.ts';
import type { AdminStatus } from '../../admin/server.ts';
import { controlPlaneProxyIn } from '../../protocol/proxy-image.ts';
import { compareWithControlPlane, type InstallSummary } from '../../proxy/install-record.ts';
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
  return lines;
}

export function renderStatusTable(status: AdminStatus): string {
  const lines = [`mesh-harness ${status.version} (pid ${status.pid}): ${status.ready ? 'READY' : 'NOT READY'}`, `status: ${status.status}`, ''];
  const rows = status.components.map((c) => [c.name, c.phase, age(c.since), c.message + (c.lastError && !c.ready ? ` (last error: ${c.lastError})` : '')]);
  lines.push(...table(['COMPONENT', 'PHASE', 'SINCE', 'MESSAGE'], rows));
  const proxy = status.components.find((c) => c.name === 'proxy');
  if (proxy) {
    const { line, differs } = compareWithControlPlane(proxy.detail?.['installed'] as InstallSummary | undefined, controlPlaneProxyIn(status.components)?.version);
    lines.push('', `proxy version: ${line}${differs ? ' (mesh-harness proxy install takes the control plane\'s)' : ''}`);
  }
  const probes = status.components.find((c) => c.name === 'probes');
  if (probes?.detail) lines.push(...renderProbes(probes.detail));
  return lines.join('\n');
}

export const statusCommand: Command = {
  name: 'status',
  usage: 'mesh-harness status [--json] [--config PATH]',
  async run(args, io) {
    const { values } = parseCommandArgs(this, args, { ...configOptions, json: { type: 'boolean' } });
    const { config } = loadCommandConfig(values, io);
    const host = adminClientHost(config.admin);
    let status: AdminStatus;
    try {
      status = await fetchAdminStatus(host, config.admin.port, 3000);
    } catch (err) {
      throw new CliError(`no mesh-harness daemon answers on ${host}:${config.admin.port} (${(err as Error).message}); is it running? try: systemctl status mesh-harness`, EXIT.UNAVAILABLE);
    }
    write(io.stdout, values.json ? JSON.stringify(status, null, 2) : renderStatusTable(status));
    return status.ready ? EXIT.OK : EXIT.FAILURE;
  },
};
