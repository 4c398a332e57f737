/**
 * The contract every configuration input must keep, whatever it holds (issue 12): exit 0,
 * 78 (config) or 64 (usage); on 78 one line per problem, each naming a field; never raw
 * JavaScript error text or a stack; bounded output and time.
 */
import fc from 'fast-check';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { schemaFields } from '../../src/config/schema.ts';
import { runInProcess, type InProcessResult } from './cli-inprocess.ts';

/** Generous: the machine is shared; a hang or a quadratic blow-up is far beyond it. */
export const MAX_MS = 60_000;
export const MAX_OUTPUT_CHARS = 64 * 1024;

const RAW_JS = /TypeError|RangeError|ReferenceError|SyntaxError|Cannot read prop|Maximum call stack|is not a function|is not iterable|undefined is not|Invalid array length|\n\s+at \S+ \(|\[object Object\]/;
// A problem line starts with what it is about: a field path, a --set flag, the file, or the top level.
const PROBLEM_LINE = /^ {2}(--set )?(config file "|\(top level\)|… and \d+ more problems|[A-Za-z_[]|\[")/;
const FIELD_PATHS = schemaFields().map(([p]) => p);

export interface Case {
  /** Command line after `mesh-harness`, with FILE for the config file. */
  argv: string[];
  /** File content (written verbatim), or undefined for no file argument. */
  file?: string;
  env: Record<string, string>;
}

export function violations(result: InProcessResult, allowed: number[] = [0, 64, 78]): string[] {
  const found: string[] = [];
  const all = `${result.stdout}\n${result.stderr}`;
  if (!allowed.includes(result.exitCode)) found.push(`exit code ${result.exitCode}, expected one of ${allowed.join(', ')}`);
  if (RAW_JS.test(all)) found.push(`raw JavaScript error text: ${JSON.stringify(all.match(RAW_JS)![0])}`);
  if (result.outputChars > MAX_OUTPUT_CHARS) found.push(`output of ${result.outputChars} characters`);
  if (result.ms > MAX_MS) found.push(`took ${Math.round(result.ms)} ms`);
  const errLines = result.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('mesh-harness: warning: '));
  if (result.exitCode === 78) {
    const header = /^mesh-harness [a-z]+( [a-z]+)?: invalid configuration \((\d+) problems?\):$/.exec(errLines[0] ?? '');
    if (!header) found.push(`78 without the problem header: ${JSON.stringify(errLines[0]?.slice(0, 200))}`);
    const lines = errLines.slice(1);
    if (header && Number(header[2]) !== lines.length) found.push(`header says ${header[2]} problems, ${lines.length} lines follow`);
    for (const line of lines) {
      if (!PROBLEM_LINE.test(line)) found.push(`a problem line that names no field: ${JSON.stringify(line.slice(0, 200))}`);
    }
  } else if (result.exitCode === 64) {
    if (!/usage|--set|expected/.test(result.stderr)) found.push('64 without a usage hint');
  } else if (result.exitCode === 0 && errLines.length > 0) {
    found.push(`exit 0 with errors on stderr: ${JSON.stringify(errLines[0]!.slice(0, 200))}`);
  }
  return found;
}

export async function runCase(dir: string, c: Case): Promise<{ result: InProcessResult; problems: string[] }> {
  const path = join(dir, 'config.json');
  if (c.file !== undefined) writeFileSync(path, c.file);
  const argv = c.argv.map((a) => (a === 'FILE' ? path : a));
  const result = await runInProcess(argv, c.env);
  return { result, problems: violations(result) };
}

// Generators: values near each field's format, and plain junk, in every place.
const nasty = fc.constantFrom('__proto__', 'constructor', 'prototype', 'length', '', '-1', '--no-idn', '-sfiles', 'a\u0000b', 'x\ny', '\u001b[31mred', '1e309', '30', 'toString');
const leaf = fc.oneof(
  fc.integer({ min: -70000, max: 140000 }),
  fc.double(),
  fc.constantFrom(1e309 as number, -0, 4294967295, 0, 1, 22, 4143, 65535, 65536),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 40 }),
  nasty,
  fc.constantFrom('10s', '100ms', '5m', '1h', '127.0.0.1', '::1', '10.0.0.0/8', 'fd00::/8', '8000-8100', 'spiffe://root.linkerd.cluster.local/vm/web', 'meshproxy', 'nobody', 'root', 'managed', 'external', 'on', 'off', 'auto', 'json', 'TCP', 'a.b:80'),
);
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), nasty), tie('v'), { maxKeys: 3 })),
})).v;

const sectionNames = [...new Set(FIELD_PATHS.map((p) => p.split('.')[0]!))];
const section = fc.dictionary(
  fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...FIELD_PATHS.map((p) => p.split('.')[1]!)) }, { weight: 1, arbitrary: nasty }, { weight: 1, arbitrary: fc.string({ maxLength: 10 }) }),
  value,
  { maxKeys: 6 },
);
const configObject = fc.dictionary(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...sectionNames) }, { weight: 1, arbitrary: nasty }), fc.oneof({ weight: 5, arbitrary: section }, { weight: 1, arbitrary: value }), { maxKeys: 5 });

const fileText = fc.oneof(
  { weight: 8, arbitrary: configObject.map((o) => JSON.stringify(o)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 1, max: 3000 }), fc.constantFrom('[', '{"a":')).map(([n, open]) => `{"workload":${open.repeat(n)}`) },
);

const envName = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...FIELD_PATHS.map((p) => `MESH_HARNESS_${p.split('.').map((s) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`)) }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }).map((s) => `MESH_HARNESS_${s}`) });
const envText = fc.oneof(leaf.map((v) => (typeof v === 'string' ? v : JSON.stringify(v) ?? 'null')), value.map((v) => JSON.stringify(v) ?? ''));
const envVars = fc.dictionary(envName, envText.map((s) => s.replace(/\u0000/g, '')), { maxKeys: 3 });
const setFlag = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(fc.constantFrom(...FIELD_PATHS), envText).map(([p, v]) => `${p}=${v}`) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom('=', 'a.b', 'admin.a.b=1', '.=', 'x=1', 'proxy.user=--service=files') },
);

export const caseArbitrary: fc.Arbitrary<Case> = fc
  .record({
    command: fc.constantFrom(['config', 'validate', 'FILE'], ['config', 'show', '--config', 'FILE'], ['config', 'show', '--json', '--config', 'FILE'], ['iptables', 'render', '--config', 'FILE'], ['proxy', 'env', '--config', 'FILE']),
    file: fileText,
    env: envVars,
    sets: fc.array(setFlag, { maxLength: 3 }),
  })
  .map(({ command, file, env, sets }) => ({
    argv: command[1] === 'validate' ? command : [...command, ...sets.flatMap((s) => ['--set', s])],
    file,
    env,
  }));
