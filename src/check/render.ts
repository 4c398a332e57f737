/**
 * How check results are shown: a table in the style of `linkerd check` (one line per check
 * under a heading per area, the message, hint and runbook under each failure) or JSON.
 * Pure: the command decides where the text goes and whether the terminal shows Unicode.
 */
import { AREAS, type Area, type CheckResult, type Verdict } from './check.ts';

export const RUNBOOK = 'docs/operations.md';

const MARKS: Record<'unicode' | 'ascii', Record<Verdict, string>> = {
  unicode: { ok: '√', fail: '×', warn: '‼', skip: '-' },
  ascii: { ok: '[ok]  ', fail: '[FAIL]', warn: '[warn]', skip: '[skip]' },
};

/** The runbook anchor of a check id: docs/operations.md#check-identity-svid. */
export function runbookAnchor(id: string): string {
  return `${RUNBOOK}#check-${id.replace(/\./g, '-')}`;
}

export function renderAreaHeading(area: Area): string {
  return `${area}\n${'-'.repeat(area.length)}`;
}

export function renderResult(result: CheckResult, style: 'unicode' | 'ascii'): string {
  const mark = MARKS[style][result.verdict];
  const indent = ' '.repeat(style === 'unicode' ? 4 : 9);
  const lines: string[] = [];
  if (result.verdict === 'ok') lines.push(`${mark} ${result.name}: ${firstLine(result.message)}`);
  else if (result.verdict === 'skip') lines.push(`${mark} ${result.name} (skipped: ${firstLine(result.message)})`);
  else {
    lines.push(`${mark} ${result.name}`);
    for (const line of result.message.split('\n')) lines.push(`${indent}${line}`);
    if (result.hint) lines.push(`${indent}hint: ${result.hint}`);
    lines.push(`${indent}see ${runbookAnchor(result.id)}`);
  }
  return lines.join('\n');
}

function firstLine(text: string): string {
  return text.split('\n')[0]!;
}

export function countVerdicts(results: readonly CheckResult[]): Record<Verdict, number> {
  const counts: Record<Verdict, number> = { ok: 0, warn: 0, fail: 0, skip: 0 };
  for (const result of results) counts[result.verdict] += 1;
  return counts;
}

export function renderSummary(results: readonly CheckResult[], style: 'unicode' | 'ascii', elapsedMs: number): string {
  const counts = countVerdicts(results);
  const mark = MARKS[style][counts.fail > 0 ? 'fail' : counts.warn > 0 ? 'warn' : 'ok'].trim();
  const parts = [`${counts.ok} passed`, `${counts.fail} failed`, `${counts.warn} warning${counts.warn === 1 ? '' : 's'}`, `${counts.skip} skipped`];
  return `Status check results are ${mark} (${parts.join(', ')}; ${(elapsedMs / 1000).toFixed(1)} s)`;
}

/** Result names as `linkerd check -o json` spells them. */
const JSON_RESULT: Record<Verdict, string> = { ok: 'success', warn: 'warning', fail: 'error', skip: 'skipped' };

export interface CheckReport {
  success: boolean;
  durationMs: number;
  summary: Record<Verdict, number>;
  categories: Array<{
    categoryName: Area;
    checks: Array<{ id: string; subject?: string; description: string; result: string; message: string; hint?: string; runbook?: string; durationMs: number }>;
  }>;
}

export function reportJson(results: readonly CheckResult[], durationMs: number): CheckReport {
  const summary = countVerdicts(results);
  return {
    success: summary.fail === 0,
    durationMs: Math.round(durationMs),
    summary,
    categories: AREAS.filter((area) => results.some((r) => r.area === area)).map((area) => ({
      categoryName: area,
      checks: results
        .filter((r) => r.area === area)
        .map((r) => ({
          id: r.id,
          ...(r.subject !== undefined ? { subject: r.subject } : {}),
          description: r.name,
          result: JSON_RESULT[r.verdict],
          message: r.message,
          ...(r.hint ? { hint: r.hint } : {}),
          ...(r.verdict === 'fail' || r.verdict === 'warn' ? { runbook: runbookAnchor(r.id) } : {}),
          durationMs: r.durationMs,
        })),
    })),
  };
}
