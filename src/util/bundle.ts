import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownerAlive, readOwner, recordOwner } from './owner.ts';
import { packageRoot } from './paths.ts';
import { copyReadable } from './run-as.ts';

/** The built program `entry` (dist/<entry>.js, see scripts/build.mjs) of this package. */
export function bundlePath(entry: string): string {
  return join(packageRoot(), 'dist', `${entry}.js`);
}

/**
 * Copies the built program `entry` (dist/<entry>.js and the chunks it may load) and the
 * package's proto/ into `dir`, in the package's layout (package.json and proto/ beside
 * dist/, so packageRoot() works from the copy), every file readable by every account.
 *
 * For a child that runs as an unprivileged account, which cannot read a checkout under a
 * 0700 directory (`/root`, any `mktemp -d`); an installed package needs no copy. `dir` must
 * itself be reachable by that account. Returns the copied entry's path.
 */
export function copyBundle(dir: string, entry: string): string {
  const root = packageRoot();
  const bundle = bundlePath(entry);
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run npm run build first`);
  for (const sub of ['', 'dist', 'dist/chunks', 'proto']) {
    mkdirSync(join(dir, sub), { recursive: true });
    chmodSync(join(dir, sub), 0o755);
  }
  writeFileSync(join(dir, 'package.json'), '{ "type": "module", "private": true }\n', { mode: 0o644 });
  const files = [
    `dist/${entry}.js`,
    ...readdirSync(join(root, 'dist', 'chunks'))
      .filter((name) => name.endsWith('.js'))
      .map((name) => `dist/chunks/${name}`),
  ];
  for (const file of files) copyReadable(join(root, file), join(dir, file));
  cpSync(join(root, 'proto'), join(dir, 'proto'), { recursive: true });
  return join(dir, 'dist', `${entry}.js`);
}

/**
 * A copy of `entry` (see copyBundle) in a fresh directory of its own under the temp
 * directory, recorded as this process's. Copies that an earlier process left behind (it
 * was SIGKILLed) are removed first: only directories this account made, whose recorded
 * owner is gone. The caller removes its copy when done with it.
 */
export function temporaryBundleCopy(entry: string): { dir: string; script: string } {
  const prefix = `mesh-harness-${entry}-`;
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(prefix)) continue;
    const dir = join(tmpdir(), name);
    try {
      const stats = lstatSync(dir);
      if (!stats.isDirectory() || stats.uid !== process.geteuid?.()) continue;
    } catch {
      continue;
    }
    const owner = readOwner(dir);
    if (owner && !ownerAlive(owner)) rmSync(dir, { recursive: true, force: true });
  }
  const dir = mkdtempSync(join(tmpdir(), prefix));
  recordOwner(dir);
  return { dir, script: copyBundle(dir, entry) };
}
