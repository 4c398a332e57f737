// How the programs are bundled, shared by `npm run build` (dist/, every program, source
// maps) and scripts/package.mjs (the .deb/.rpm: mesh-harness alone, without the playground).
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './build-info.mjs';

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));

/**
 * Bundles `entries` (output name -> source) into `outdir`, one chunk per lazily loaded
 * command. `packaged`: the build the packages ship. MESH_HARNESS_PACKAGED is true in it,
 * so the playground's command (whose development stand-ins are not shipped) and everything
 * only it imports (the registrar) are left out, and no source maps are written. Returns
 * the names of the npm packages the bundle contains.
 */
export async function bundle({ entries, outdir, packaged = false }) {
  const { metafile } = await build({
    entryPoints: Object.fromEntries(Object.entries(entries).map(([name, source]) => [name, join(repoRoot, source)])),
    outdir,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    // One chunk per command: a command loads only the code it needs.
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    sourcemap: packaged ? false : 'linked',
    // Folds the MESH_HARNESS_PACKAGED test, so what only the playground imports is never emitted.
    minifySyntax: packaged,
    // koffi loads its native binary from its own package; it is imported lazily, only under systemd.
    external: ['koffi'],
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
    define: { MESH_HARNESS_VERSION: JSON.stringify(pkg.version), ...(packaged ? { MESH_HARNESS_PACKAGED: 'true' } : {}) },
    // Some CommonJS dependencies call require() for Node built-ins; give the ESM bundle one.
    banner: {
      js: "import { createRequire as __meshCreateRequire } from 'node:module'; const require = __meshCreateRequire(import.meta.url);",
    },
  });
  const packages = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) packages.add(match[1]);
  }
  return packages;
}
