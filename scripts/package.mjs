#!/usr/bin/env node
// Builds the mesh-harness .deb and .rpm packages for amd64 and arm64. The program is
// bundled here, mesh-harness alone and without the playground (scripts/lib/bundle.mjs):
// the packages ship only what the VM runs.
//
// Tools: dpkg-deb and rpmbuild (Debian's `rpm` package), both plain apt installs on the
// build host. They produce native archives that lintian and rpm inspect as they are,
// real conffiles / %config(noreplace), and maintainer scripts we write in each
// distribution's own conventions; nfpm would add a Go build for no gain here.
//
// Reproducible: the same inputs give the same bytes. Every file's mtime is
// SOURCE_DATE_EPOCH (default: the last commit's time), modes are normalised, owners are
// root, entries are sorted, and the compressors run with a fixed thread count.
//
// usage: node scripts/package.mjs [--out DIR] [--arch amd64|arm64]... [--format deb|rpm]...
//                                 [--version VERSION] [--compression xz|gzip|none]
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, copyFileSync, cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync,
  rmSync, statSync, utimesSync, writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { BuildError, bundledPackages, repoRoot as root, sourceDateEpoch } from './lib/build-info.mjs';
import { bundle } from './lib/bundle.mjs';
import { runtime, unpackNode } from './lib/node-runtime.mjs';

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const ARCHES = {
  amd64: { rpm: 'x86_64', koffi: 'linux_x64', strip: 'x86_64-linux-gnu-strip', binutils: 'binutils-x86-64-linux-gnu' },
  arm64: { rpm: 'aarch64', koffi: 'linux_arm64', strip: 'aarch64-linux-gnu-strip', binutils: 'binutils-aarch64-linux-gnu' },
};

function fail(message, code = 1) {
  process.stderr.write(`package: ${message}\n`);
  process.exit(code);
}

let args;
try {
  args = parseArgs({
    options: {
      out: { type: 'string', default: join(root, 'build', 'packages') },
      arch: { type: 'string', multiple: true },
      format: { type: 'string', multiple: true },
      version: { type: 'string' },
      // Tests that only install the package may skip the slow xz pass; releases never do.
      compression: { type: 'string', default: 'xz' },
    },
  }).values;
} catch (error) {
  fail(`${error.message}\nusage: node scripts/package.mjs [--out DIR] [--arch amd64|arm64]... [--format deb|rpm]... [--version VERSION]`, 64);
}
const arches = args.arch ?? Object.keys(ARCHES);
const formats = args.format ?? ['deb', 'rpm'];
for (const a of arches) if (!ARCHES[a]) fail(`unknown --arch ${a}: use amd64 or arm64`, 64);
for (const f of formats) if (f !== 'deb' && f !== 'rpm') fail(`unknown --format ${f}: use deb or rpm`, 64);
const version = args.version ?? pkg.version;
if (!['xz', 'gzip', 'none'].includes(args.compression)) fail(`unknown --compression ${args.compression}: use xz, gzip or none`, 64);
if (!/^[0-9][A-Za-z0-9.+~]*$/.test(version)) fail(`--version ${version}: use digits, letters and . + ~ only`, 64);
const tools = [
  ...formats.map((f) => (f === 'deb' ? ['dpkg-deb', 'dpkg-dev'] : ['rpmbuild', 'rpm'])),
  ...arches.map((a) => [ARCHES[a].strip, ARCHES[a].binutils]),
];
for (const [tool, from] of tools) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    fail(`${tool} is missing: apt-get install ${from}`, 69);
  }
}

let epoch;
try {
  epoch = sourceDateEpoch();
} catch (error) {
  if (!(error instanceof BuildError)) throw error;
  fail(error.message, error.code);
}
const sourceDate = new Date(epoch * 1000);
const outDir = args.out;
const work = join(outDir, '.work');
function write(path, content, mode = 0o644) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  chmodSync(path, mode);
}

function copy(from, to, mode) {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  chmodSync(to, mode ?? (statSync(from).mode & 0o111 ? 0o755 : 0o644));
}

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    out.push(path);
    if (lstatSync(path).isDirectory()) out.push(...walk(path));
  }
  return out;
}

/** Directories 0755, executables 0755, everything else 0644; every mtime SOURCE_DATE_EPOCH. */
function normalise(tree) {
  for (const path of [...walk(tree), tree].reverse()) {
    const st = lstatSync(path);
    if (st.isDirectory()) chmodSync(path, 0o755);
    else chmodSync(path, st.mode & 0o100 ? 0o755 : 0o644);
    utimesSync(path, sourceDate, sourceDate);
  }
}

/**
 * Copies an ELF file without its symbol tables (nothing needs them at run time; the
 * Node.js binary loses about 18 MB), with this architecture's strip from binutils.
 * Deterministic: the same input gives the same bytes.
 */
function strip(arch, from, to, mode) {
  mkdirSync(dirname(to), { recursive: true });
  execFileSync(ARCHES[arch].strip, ['--strip-all', '-o', to, from], { stdio: ['ignore', 'ignore', 'inherit'] });
  chmodSync(to, mode);
}

function gz(text) {
  // mtime 0 and no name in the gzip header: the bytes depend on the content only.
  return gzipSync(Buffer.from(text), { level: 9 });
}

const LIB = 'usr/lib/mesh-harness';
const DOC = 'usr/share/doc/mesh-harness';

/** The installed tree both formats share (the unit's directory differs per distribution). */
function stage(dir, arch, format) {
  const { koffi } = ARCHES[arch];
  rmSync(dir, { recursive: true, force: true });

  // The application: the packaged bundle (mesh-harness alone, no playground, no source maps).
  const app = join(dir, LIB);
  write(join(app, 'package.json'), `${JSON.stringify({ name: pkg.name, version, description: pkg.description, license: pkg.license, type: 'module', private: true }, null, 2)}\n`);
  cpSync(join(root, 'proto'), join(app, 'proto'), { recursive: true });
  copy(join(appDist, 'mesh-harness.js'), join(app, 'dist', 'mesh-harness.js'), 0o644);
  // The probe runner: the harness starts it as probes.execUser, which reads it from here (0644).
  copy(join(appDist, 'probe-runner.js'), join(app, 'dist', 'probe-runner.js'), 0o644);
  for (const chunk of readdirSync(join(appDist, 'chunks')).sort()) {
    copy(join(appDist, 'chunks', chunk), join(app, 'dist', 'chunks', chunk), 0o644);
  }
  // koffi (sd_notify through libc) with this architecture's prebuilt module only, stripped.
  const koffiSrc = join(root, 'node_modules', 'koffi');
  for (const f of ['package.json', 'index.js', 'indirect.js', 'LICENSE.txt']) copy(join(koffiSrc, f), join(app, 'node_modules', 'koffi', f), 0o644);
  strip(arch, join(koffiSrc, 'build', 'koffi', koffi, 'koffi.node'), join(app, 'node_modules', 'koffi', 'build', 'koffi', koffi, 'koffi.node'), 0o644);
  // The Node.js runtime: the binary (without its symbol tables) and its licence, nothing
  // else from the tarball.
  const node = unpackNode(arch, join(work, `node-${arch}`));
  strip(arch, node.binary, join(app, 'node', 'bin', 'node'), 0o755);
  copy(node.license, join(app, 'node', 'LICENSE'), 0o644);
  copy(join(root, 'packaging', 'scripts', 'restart-after-upgrade.sh'), join(app, 'scripts', 'restart-after-upgrade.sh'), 0o755);
  copy(join(root, 'packaging', 'sysusers.d', 'mesh-harness.conf'), join(dir, 'usr/lib/sysusers.d/mesh-harness.conf'), 0o644);
  copy(join(root, 'packaging', 'tmpfiles.d', 'mesh-harness.conf'), join(dir, 'usr/lib/tmpfiles.d/mesh-harness.conf'), 0o644);

  write(join(dir, 'usr/bin/mesh-harness'), `#!/bin/sh
# mesh-harness runs on the Node.js runtime it ships with, never on the distribution's.
# Under systemd (the unit's CacheDirectory=, root-only), V8 keeps the compiled code between
# starts: a faster start. Never elsewhere: a cache others can write would be code they run as root.
if [ -n "\${CACHE_DIRECTORY:-}" ] && [ "\${CACHE_DIRECTORY#/var/cache/}" != "\$CACHE_DIRECTORY" ]; then
  NODE_COMPILE_CACHE="\$CACHE_DIRECTORY/node-compile-cache"
  export NODE_COMPILE_CACHE
fi
exec /${LIB}/node/bin/node /${LIB}/dist/mesh-harness.js "$@"
`, 0o755);
  const unitDir = format === 'deb' ? 'lib/systemd/system' : 'usr/lib/systemd/system';
  copy(join(root, 'systemd', 'mesh-harness.service'), join(dir, unitDir, 'mesh-harness.service'), 0o644);
  copy(join(root, 'packaging', 'config.json'), join(dir, 'etc/mesh-harness/config.json'), 0o644);

  // Documentation, the upstream changelog and the licence terms.
  for (const doc of ['install.md', 'configuration.md', 'operations.md']) {
    write(join(dir, DOC, `${doc}.gz`), gz(readFileSync(join(root, 'docs', doc))));
  }
  write(join(dir, DOC, 'README.md.gz'), gz(readFileSync(join(root, 'README.md'))));
  write(join(dir, 'usr/share/man/man1/mesh-harness.1.gz'), gz(readFileSync(join(root, 'packaging', 'mesh-harness.1'))));
  const copyright = copyrightText();
  if (format === 'deb') {
    write(join(dir, DOC, 'copyright'), copyright);
    // Native Debian package: changelog.gz is the Debian-format changelog, the
    // project's own changelog sits beside it.
    write(join(dir, DOC, 'changelog.gz'), gz(debianChangelog()));
    write(join(dir, DOC, 'CHANGELOG.md.gz'), gz(readFileSync(join(root, 'CHANGELOG.md'))));
    copy(join(root, 'packaging', 'deb', 'lintian-overrides'), join(dir, 'usr/share/lintian/overrides/mesh-harness'), 0o644);
  } else {
    write(join(dir, DOC, 'CHANGELOG.md'), readFileSync(join(root, 'CHANGELOG.md')));
    write(join(dir, 'usr/share/licenses/mesh-harness/COPYRIGHT'), copyright);
  }
  normalise(dir);
}

function copyrightText() {
  return `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mesh-harness
Source: https://github.com/mesh-harness/mesh-harness

Files: *
Copyright: ${new Date(epoch * 1000).getUTCFullYear()} mesh-harness contributors
License: Apache-2.0

Files: usr/lib/mesh-harness/dist/*
Copyright: ${new Date(epoch * 1000).getUTCFullYear()} mesh-harness contributors and the authors of the bundled npm packages
License: Apache-2.0 and MIT and ISC and BSD-3-Clause
Comment: the bundle contains ${bundledPackages(appPackages).join(', ')}.

Files: usr/lib/mesh-harness/node/*
Copyright: Node.js contributors and others, see the LICENSE file
License: MIT and others
Comment: Node.js ${runtime.version}, the official build as published on the npm registry
 (${runtime.packages.x64.name}, ${runtime.packages.arm64.name}); its complete licence,
 including the bundled third-party components, is installed as
 /usr/lib/mesh-harness/node/LICENSE.

Files: usr/lib/mesh-harness/node_modules/koffi/*
Copyright: 2021-2025 Niels Martignène <niels.martignene@protonmail.com>
License: MIT

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be found
 in /usr/share/common-licenses/Apache-2.0.

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy of
 this software and associated documentation files (the "Software"), to deal in
 the Software without restriction, including without limitation the rights to
 use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of
 the Software, and to permit persons to whom the Software is furnished to do so,
 subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all
 copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS
 FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
 COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
 IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
 CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
`;
}

function debianChangelog() {
  const date = execFileSync('date', ['-R', '-u', '-d', `@${epoch}`], { encoding: 'utf8' }).trim();
  return `mesh-harness (${version}) unstable; urgency=medium

  * Release ${version}; the changes are listed in CHANGELOG.md.gz beside this file.

 -- ${maintainer()}  ${date}
`;
}

function maintainer() {
  return process.env.MESH_PACKAGE_MAINTAINER ?? 'mesh-harness maintainers <maintainers@mesh-harness.dev>';
}

function installedSizeKiB(dir) {
  let bytes = 0;
  for (const path of walk(dir)) {
    const st = lstatSync(path);
    bytes += st.isDirectory() ? 4096 : Math.ceil(st.size / 1024) * 1024;
  }
  return Math.ceil(bytes / 1024);
}

function buildDeb(arch) {
  const dir = join(work, `deb-${arch}`);
  stage(dir, arch, 'deb');
  const control = join(dir, 'DEBIAN');
  mkdirSync(control);
  write(join(control, 'control'), `Package: mesh-harness
Version: ${version}
Architecture: ${arch}
Maintainer: ${maintainer()}
Installed-Size: ${installedSizeKiB(dir)}
Depends: libc6 (>= 2.28), libgcc-s1, libstdc++6, iptables, passwd, systemd | systemd-standalone-sysusers | systemd-sysusers
Recommends: nftables
Section: net
Priority: optional
Homepage: https://github.com/mesh-harness/mesh-harness
Description: Linkerd mesh node agent for VMs and bare-metal hosts
 mesh-harness brings a non-Kubernetes machine into a Linkerd service mesh: it
 supervises the SPIRE agent and linkerd2-proxy, keeps the iptables redirect
 rules converged, and reports readiness to systemd.
 .
 It runs on its own embedded Node.js runtime, not the distribution's.
`);
  write(join(control, 'conffiles'), '/etc/mesh-harness/config.json\n');
  for (const script of ['postinst', 'prerm', 'postrm']) copy(join(root, 'packaging', 'deb', script), join(control, script), 0o755);
  const sums = walk(dir)
    .filter((p) => !p.startsWith(control) && !p.includes('/etc/') && lstatSync(p).isFile())
    .map((p) => `${createHash('md5').update(readFileSync(p)).digest('hex')}  ${relative(dir, p)}\n`)
    .join('');
  write(join(control, 'md5sums'), sums);
  normalise(dir);
  const file = join(outDir, `mesh-harness_${version}_${arch}.deb`);
  const compression = { xz: ['-Zxz', '-z6', '--threads-max=2'], gzip: ['-Zgzip', '-z1'], none: ['-Znone'] }[args.compression];
  execFileSync('dpkg-deb', ['--root-owner-group', ...compression, '--build', dir, file], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return file;
}

function buildRpm(arch) {
  const { rpm: rpmArch } = ARCHES[arch];
  const dir = join(work, `rpm-${arch}`);
  stage(dir, arch, 'rpm');
  const files = [];
  const owned = (path) => `/${relative(dir, path)}`;
  for (const path of walk(dir)) {
    const rel = owned(path);
    if (lstatSync(path).isDirectory()) {
      // Own our directories, never the system's (/usr, /etc, /usr/lib/systemd/system, ...).
      if (rel === `/${LIB}` || rel.startsWith(`/${LIB}/`) || rel === '/etc/mesh-harness' || rel === `/${DOC}` || rel === '/usr/share/licenses/mesh-harness') files.push(`%dir ${rel}`);
    } else if (rel === '/etc/mesh-harness/config.json') files.push(`%config(noreplace) ${rel}`);
    else if (rel.startsWith(`/${DOC}/`)) files.push(`%doc ${rel}`);
    else if (rel.startsWith('/usr/share/licenses/')) files.push(`%license ${rel}`);
    else files.push(rel);
  }
  const specDir = join(work, `rpmbuild-${arch}`);
  rmSync(specDir, { recursive: true, force: true });
  mkdirSync(specDir, { recursive: true });
  const spec = readFileSync(join(root, 'packaging', 'rpm', 'mesh-harness.spec.in'), 'utf8')
    .replaceAll('@VERSION@', version)
    .replaceAll('@STAGE@', dir)
    .replace('@SYSUSERS@', readFileSync(join(root, 'packaging', 'sysusers.d', 'mesh-harness.conf'), 'utf8').trimEnd())
    .replace('@FILES@', files.join('\n'));
  const specFile = join(specDir, 'mesh-harness.spec');
  writeFileSync(specFile, spec);
  execFileSync('rpmbuild', [
    '-bb', '--target', `${rpmArch}-linux`,
    '--define', `_topdir ${specDir}`,
    '--define', `_rpmdir ${specDir}/RPMS`,
    '--define', '_rpmfilename %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm',
    '--define', `_tmppath ${specDir}/tmp`,
    '--define', `buildroot ${specDir}/BUILDROOT`,
    '--define', `_binary_payload ${{ xz: 'w6T2.xzdio', gzip: 'w1.gzdio', none: 'w0.ufdio' }[args.compression]}`,
    specFile,
  ], { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch), LC_ALL: 'C' }, stdio: ['ignore', 'ignore', 'inherit'] });
  const name = `mesh-harness-${version}-1.${rpmArch}.rpm`;
  const file = join(outDir, name);
  renameSync(join(specDir, 'RPMS', name), file);
  return file;
}

mkdirSync(outDir, { recursive: true });
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const appDist = join(work, 'dist');
const appPackages = await bundle({ entries: { 'mesh-harness': 'src/cli/main.ts', 'probe-runner': 'src/probes/runner/main.ts' }, outdir: appDist, packaged: true });
const built = [];
try {
  for (const arch of arches) {
    if (formats.includes('deb')) built.push(buildDeb(arch));
    if (formats.includes('rpm')) built.push(buildRpm(arch));
  }
} catch (error) {
  if (!(error instanceof BuildError)) throw error;
  fail(error.message, error.code);
}
rmSync(work, { recursive: true, force: true });
for (const file of built) process.stdout.write(`${file}\t${statSync(file).size}\n`);
