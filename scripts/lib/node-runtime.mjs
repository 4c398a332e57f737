// The pinned Node.js runtime the release artefacts embed (packaging/node-runtime.json): the
// official Linux builds as the npm registry serves them, fetched with npm once per version
// and architecture, cached, and checked against the pinned integrity every time they are
// used. scripts/package.mjs (the .deb and .rpm) and scripts/image.mjs (the registrar's
// container image) both take their runtime from here.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { BuildError, repoRoot } from './build-info.mjs';

/** Debian architecture name -> the runtime package's architecture suffix (node-linux-<x>). */
export const NODE_ARCH = { amd64: 'x64', arm64: 'arm64' };

export const runtime = JSON.parse(readFileSync(join(repoRoot, 'packaging', 'node-runtime.json'), 'utf8'));

/** Where the runtime tarballs are kept between builds (MESH_PACKAGE_CACHE overrides). */
export function runtimeCacheDir() {
  return process.env.MESH_PACKAGE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'mesh-harness', 'node-runtime');
}

/** The pinned Node.js tarball for one architecture (amd64 or arm64), downloaded once, verified every time. */
export function nodeTarball(arch) {
  const nodeArch = NODE_ARCH[arch];
  if (!nodeArch) throw new BuildError(`no Node.js runtime for architecture ${arch}: use ${Object.keys(NODE_ARCH).join(' or ')}`, 64);
  const { name, integrity } = runtime.packages[nodeArch];
  const cacheDir = runtimeCacheDir();
  const file = join(cacheDir, `${name}-${runtime.version}.tgz`);
  if (!existsSync(file)) {
    mkdirSync(cacheDir, { recursive: true });
    execFileSync('npm', ['pack', `${name}@${runtime.version}`, '--pack-destination', cacheDir, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const [algorithm, expected] = integrity.split(/-(.*)/s);
  const actual = createHash(algorithm).update(readFileSync(file)).digest('base64');
  if (actual !== expected) {
    rmSync(file, { force: true });
    throw new BuildError(`${name}@${runtime.version}: checksum mismatch (registry integrity ${integrity}, downloaded ${algorithm}-${actual}); the cached file was removed, run again`);
  }
  return file;
}

/**
 * Unpacks the runtime's binary and licence, nothing else from the tarball, into `dir`
 * (emptied first). Returns the paths of the two files.
 */
export function unpackNode(arch, dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('tar', ['-xzf', nodeTarball(arch), '-C', dir, 'package/bin/node', 'package/LICENSE']);
  return { binary: join(dir, 'package', 'bin', 'node'), license: join(dir, 'package', 'LICENSE') };
}
