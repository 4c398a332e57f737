import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './paths.ts';

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
  for (const file of files) {
    copyFileSync(join(root, file), join(dir, file));
    chmodSync(join(dir, file), 0o644);
  }
  cpSync(join(root, 'proto'), join(dir, 'proto'), { recursive: true });
  return join(dir, 'dist', `${entry}.js`);
}
