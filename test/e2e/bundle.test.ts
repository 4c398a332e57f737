/**
 * The daemon's production code path carries no development code: from the CLI entry,
 * through the `run` command and everything it imports (statically or lazily), no module
 * of src/dev (the playground, the dev Workload API, the dev proxy) is bundled. Read from
 * the built dist/ (npm test builds it first) through its source maps.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { repoRoot } from '../helpers/cli.ts';

const dist = join(repoRoot, 'dist');

function sourcesOf(file: string): string[] {
  const map = JSON.parse(readFileSync(`${file}.map`, 'utf8')) as { sources: string[] };
  return map.sources.map((s) => resolve(dirname(file), s).slice(repoRoot.length + 1));
}

/** Files a chunk imports: static `from "./x.js"` / `import "./x.js"`, and dynamic `import("./x.js")`. */
function importsOf(file: string): { static: string[]; dynamic: string[] } {
  const code = readFileSync(file, 'utf8');
  const at = (re: RegExp) => [...code.matchAll(re)].map((m) => resolve(dirname(file), m[1]!));
  return { static: at(/(?:from|import)\s*["'](\.{1,2}\/[^"']+\.js)["']/g), dynamic: at(/import\(\s*["'](\.{1,2}\/[^"']+\.js)["']\s*\)/g) };
}

/** Every file loaded once `entry` is: static imports only, or lazy ones too. */
function closure(entries: string[], followDynamic: boolean): Set<string> {
  const seen = new Set<string>();
  const todo = [...entries];
  while (todo.length) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const imports = importsOf(file);
    todo.push(...imports.static, ...(followDynamic ? imports.dynamic : []));
  }
  return seen;
}

t.test('the run command chunk and all it loads contain no src/dev module', async (t) => {
  const entry = join(dist, 'mesh-harness.js');
  const lazy = importsOf(entry).dynamic.concat(...[...closure([entry], false)].map((f) => importsOf(f).dynamic));
  const runChunk = lazy.find((file) => sourcesOf(file).includes('src/cli/commands/run.ts'));
  t.ok(runChunk, 'a lazily loaded chunk holds src/cli/commands/run.ts');
  const files = new Set([...closure([entry], false), ...closure([runChunk!], true)]);
  const sources = [...files].flatMap(sourcesOf);
  t.ok(sources.includes('src/harness/wiring.ts'), 'the closure reaches the daemon wiring (the check looks where it should)');
  t.ok(sources.includes('src/iptables/component.ts'));
  t.same(sources.filter((s) => s.startsWith('src/dev/')), [], 'no src/dev module in the daemon path');
  t.ok(sourcesOf(join(dist, 'dev-proxy.js')).some((s) => s.startsWith('src/dev/')), 'while the dev proxy bundle does hold them (the check can fail)');
});
