import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../util/paths.ts';

/**
 * Writes an executable named linkerd2-proxy into `dir` that runs the built development
 * proxy (dist/dev-proxy.js): `proxy.binary` names one executable, as for the real proxy.
 * `dir` must be readable by the proxy user.
 */
export function writeDevProxyLauncher(dir: string): string {
  const executable = join(dir, 'linkerd2-proxy');
  writeFileSync(executable, `#!/bin/sh\nexec ${process.execPath} ${join(packageRoot(), 'dist', 'dev-proxy.js')} "$@"\n`, { mode: 0o755 });
  return executable;
}
