import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeDevProxyLauncher } from '../../../src/dev/proxy/launcher.ts';
import { repoRoot } from '../../helpers/cli.ts';
import { readableTempDir } from '../../helpers/tmp.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * An executable that runs the built development proxy (`npm test` builds dist/ first), the
 * way proxy.binary names the real proxy. Its folder is readable by nobody, which some
 * tests run the proxy as.
 */
export async function buildDevProxy(t: Teardown): Promise<{ executable: string }> {
  if (!existsSync(join(repoRoot, 'dist', 'dev-proxy.js'))) throw new Error('dist/dev-proxy.js is missing: run npm run build (npm test does)');
  return { executable: writeDevProxyLauncher(readableTempDir(t, 'mh-devproxy-')) };
}
