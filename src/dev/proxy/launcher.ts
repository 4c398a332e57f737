import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { accessProblem, type Account } from '../../util/access.ts';
import { bundlePath, copyBundle } from '../../util/bundle.ts';
import { packageRoot } from '../../util/paths.ts';
import { writeNodeLauncher } from '../../util/run-as.ts';

/** Raised when the development proxy could not be run as the given account from here. */
export class DevProxyLaunchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DevProxyLaunchError';
  }
}

/**
 * koffi (external to the bundle: it loads a native binary) reads the original destination
 * of redirected connections. Only this platform's binary is copied; without koffi the
 * proxy still works and reports the destination as unknown.
 */
function copyKoffi(root: string, copy: string): void {
  const from = join(root, 'node_modules', 'koffi');
  if (!existsSync(from)) return;
  const to = join(copy, 'node_modules', 'koffi');
  for (const file of ['package.json', 'index.js', 'indirect.js']) {
    if (!existsSync(join(from, file))) continue;
    mkdirSync(to, { recursive: true });
    copyFileSync(join(from, file), join(to, file));
  }
  for (const libc of ['linux', 'musl']) {
    const triplet = `build/koffi/${libc}_${process.arch}`;
    if (existsSync(join(from, triplet))) cpSync(join(from, triplet), join(to, triplet), { recursive: true });
  }
  // Readable by every account: the proxy user loads it.
  for (const dir of ['node_modules', 'node_modules/koffi', 'node_modules/koffi/build', 'node_modules/koffi/build/koffi']) if (existsSync(join(copy, dir))) chmodSync(join(copy, dir), 0o755);
}

/**
 * Writes an executable named linkerd2-proxy into `dir` that runs the built development
 * proxy: `proxy.binary` names one executable, as for the real proxy.
 *
 * The proxy runs as an unprivileged account, which cannot read a checkout under a 0700
 * directory (`/root`, any `mktemp -d`). So the bundle it needs (dist/dev-proxy.js, the
 * chunks, the Workload API proto, koffi) is copied into `dir`, which must itself be reachable
 * by that account (`accessProblem` says why not). Node itself cannot be copied; when the
 * account cannot execute it, this fails at once saying so.
 */
export function writeDevProxyLauncher(dir: string, account?: Account): string {
  const root = packageRoot();
  const bundle = bundlePath('dev-proxy');
  if (!existsSync(bundle)) throw new DevProxyLaunchError(`${bundle} is missing: run npm run build first`);
  if (account) {
    const node = accessProblem(process.execPath, account, 'execute');
    if (node) throw new DevProxyLaunchError(`the development proxy runs as ${account.label} with this Node.js (${process.execPath}), but ${node}; or install Node.js where every user can run it (for example /usr/local/bin)`);
    const here = accessProblem(join(dir, 'linkerd2-proxy'), account, 'read');
    if (here) throw new DevProxyLaunchError(`the development proxy is placed in ${dir}, but ${here}`);
  }

  const copy = join(dir, 'dev-proxy');
  const script = copyBundle(copy, 'dev-proxy');
  copyKoffi(root, copy);

  // Like the real proxy, it takes nothing from NODE_OPTIONS.
  return writeNodeLauncher(join(dir, 'linkerd2-proxy'), script);
}
