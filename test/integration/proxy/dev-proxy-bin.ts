import { build } from 'esbuild';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { repoRoot } from '../../helpers/cli.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * Bundles the development proxy from the current sources (the tests must not depend on a
 * stale dist/) and returns an executable that runs it, the way proxy.binary names the real
 * proxy. The bundle lives under node_modules/.cache so its lazy `koffi` import resolves,
 * in a directory every user may read, because the proxy runs as nobody in some tests.
 */
export async function buildDevProxy(t: Teardown): Promise<{ executable: string; bundle: string }> {
  const dir = join(repoRoot, 'node_modules', '.cache', `mesh-harness-dev-proxy-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bundle = join(dir, 'dev-proxy.mjs');
  await build({
    entryPoints: [join(repoRoot, 'src/dev/proxy/main.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    external: ['koffi'],
    logLevel: 'error',
    banner: { js: "import { createRequire as __meshCreateRequire } from 'node:module'; const require = __meshCreateRequire(import.meta.url);" },
  });
  const executable = join(dir, 'linkerd2-proxy');
  writeFileSync(executable, `#!/bin/sh\nexec ${process.execPath} ${bundle} "$@"\n`);
  chmodSync(executable, 0o755);
  chmodSync(dir, 0o755);
  return { executable, bundle };
}
