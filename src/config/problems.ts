/**
 * How a configuration problem is written: "<field>: got <value>; <what is allowed>", on one
 * line, whatever the input. Values and keys are quoted, truncated and have control
 * characters escaped, so a 50 MB string or a key holding an ANSI escape cannot flood or
 * repaint the operator's terminal.
 */

const MAX_TEXT = 60;
const MAX_ITEMS = 3;

/** A string as a JSON literal, cut to MAX_TEXT characters (JSON escapes control characters). */
function quoteText(text: string): string {
  if (text.length <= MAX_TEXT) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, MAX_TEXT))}… (${text.length} characters)`;
}

/** A bounded, one-line rendering of any value from a configuration. */
export function showValue(value: unknown, depth = 0): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return quoteText(value);
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'a number out of range';
  if (typeof value !== 'object' || value === null) return String(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    if (depth > 0) return `[…${value.length} items]`;
    const shown = value.slice(0, MAX_ITEMS).map((v) => showValue(v, depth + 1));
    return `[${shown.join(', ')}${value.length > MAX_ITEMS ? `, … (${value.length} items)` : ''}]`;
  }
  const keys = Object.keys(value);
  if (keys.length === 0) return '{}';
  if (depth > 0) return `{…${keys.length} keys}`;
  const shown = keys.slice(0, MAX_ITEMS).map((k) => `${quoteText(k)}: ${showValue((value as Record<string, unknown>)[k], depth + 1)}`);
  return `{${shown.join(', ')}${keys.length > MAX_ITEMS ? `, … (${keys.length} keys)` : ''}}`;
}

/** One segment of a field path: plain keys as they are, anything else quoted. */
export function keySegment(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/.test(key) ? key : `[${quoteText(key)}]`;
}

export function joinPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  const segment = keySegment(key);
  return segment.startsWith('[') || parent === '' ? `${parent}${segment}` : `${parent}.${segment}`;
}

/** "<path>: got <value>; <allowed>" */
export function problem(path: string, value: unknown, allowed: string): string {
  return `${path}: got ${showValue(value)}; ${allowed}`;
}

/** The most problems listed at once; the rest are counted, so the output stays bounded. */
export const MAX_PROBLEMS = 50;

export function capProblems(problems: string[]): string[] {
  if (problems.length <= MAX_PROBLEMS) return problems;
  return [...problems.slice(0, MAX_PROBLEMS), `… and ${problems.length - MAX_PROBLEMS} more problems of the same kinds; fix these first`];
}
