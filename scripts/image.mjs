#!/usr/bin/env node
// Builds the mesh-registrar container image as an OCI image archive, one per architecture:
// dist/image/mesh-registrar-<version>-<arch>.oci.tar (run `npm run build` first; `npm run
// image` does both).
//
// No Docker, podman or buildah: an OCI image is an image layout (oci-layout, index.json,
// blobs/sha256/...) holding a manifest, a config and gzipped tar layers, all plain files
// this script writes itself. The archive loads with `skopeo copy oci-archive:FILE
// docker://REGISTRY/mesh-registrar:TAG`, `podman load -i FILE` or `ctr images import FILE`.
//
// Three layers, so that a new release pushes only what changed:
//   1. a minimal glibc base from Debian 12 packages (libc6, libstdc++6, libgcc-s1, the CA
//      roots, /etc/services), unpacked with dpkg-deb and stripped of documentation (the
//      copyright files stay), translations, iconv modules and programs; /etc/passwd and
//      /etc/group with the nonroot user 65532, /tmp, and the packages' dpkg records in
//      /var/lib/dpkg/status.d for vulnerability scanners;
//   2. the pinned Node.js runtime (packaging/node-runtime.json) as /usr/bin/node, the only
//      program in the image;
//   3. the registrar under /app: dist/mesh-registrar.js and the chunks it imports, proto/,
//      a package.json, and /app/sbom.json listing every component and its version.
//
// Reproducible: the same inputs (commit, Debian package versions, runtime) give the same
// bytes and so the same digest. Every mtime is SOURCE_DATE_EPOCH (default: the last
// commit's time), owners are numeric, entries sorted, gzip writes no name or time.
//
// usage: node scripts/image.mjs [--out DIR] [--arch amd64|arm64]... [--version VERSION]
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { BuildError, bundledPackages, repoRoot as root, runScript, sourceDateEpoch } from './lib/build-info.mjs';
import { DEBIAN_RELEASE, DebianArchive, parseControl, unpackDeb } from './lib/debian.mjs';
import { NODE_ARCH, runtime, unpackNode } from './lib/node-runtime.mjs';
import { TarWriter, treeEntries } from './lib/tar.mjs';

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const ARCHES = {
  amd64: { gnu: 'x86_64-linux-gnu', platform: { architecture: 'amd64', os: 'linux' } },
  arm64: { gnu: 'aarch64-linux-gnu', platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
};

const IMAGE = {
  name: 'mesh-registrar',
  source: 'https://github.com/mesh-harness/mesh-harness',
  user: { name: 'nonroot', uid: 65532, gid: 65532 },
  entrypoint: ['/usr/bin/node', '/app/dist/mesh-registrar.js'],
  // What deploy/kubernetes/deployment.yaml passes as args; `docker run IMAGE version` replaces it.
  cmd: ['run', '--config', '/etc/mesh-registrar/registrar.json'],
  ports: [8443, 9990],
};

/**
 * The base: what /usr/bin/node links against (libc6: libc, libm, libdl, libpthread, the
 * loader; libstdc++6; libgcc-s1; gcc-12-base holds their copyright), the CA roots,
 * /etc/services and /etc/protocols, and Debian's os-release so scanners know the release.
 */
const DEBIAN_PACKAGES = ['base-files', 'ca-certificates', 'gcc-12-base', 'libc6', 'libgcc-s1', 'libstdc++6', 'netbase'];

const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

/** What of an unpacked package stays in the image (paths relative to the root, no leading /). */
function keep(pkgName, path, gnu) {
  if (pkgName === 'base-files') return ['etc/debian_version', 'etc/os-release', 'usr/lib/os-release', 'usr/share/doc/base-files/copyright'].includes(path);
  if (path.startsWith('usr/share/doc/')) {
    // The licence terms stay: copyright files and the doc links that point at them.
    return /^usr\/share\/doc\/[^/]+(\/copyright)?$/.test(path);
  }
  if (/^usr\/share\/(man|info|locale|lintian|bug|gdb|gcc)\//.test(path)) return false;
  if (path.startsWith(`usr/lib/${gnu}/gconv/`)) return false; // iconv modules: Node uses ICU
  if (/^(usr\/)?s?bin\//.test(path) || path.startsWith('usr/libexec/')) return false; // node is the only program
  if (path.startsWith('usr/share/ca-certificates/') || path.startsWith('etc/ca-certificates/')) return false; // bundled below
  return true;
}

/** Removes everything `keep` rejects, then directories left empty (except those the image needs). */
function prune(dir, pkgName, gnu) {
  const visit = (rel) => {
    const full = rel ? join(dir, rel) : dir;
    for (const name of readdirSync(full)) {
      const path = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, path));
      if (st.isDirectory()) {
        visit(path);
        if (!readdirSync(join(dir, path)).length) rmSync(join(dir, path), { recursive: true });
      } else if (!keep(pkgName, path, gnu)) rmSync(join(dir, path));
    }
  };
  visit('');
}

/** /etc/ssl/certs/ca-certificates.crt as update-ca-certificates writes it: every Mozilla root, in name order. */
function caBundle(caDir) {
  const dir = join(caDir, 'usr/share/ca-certificates/mozilla');
  return readdirSync(dir).filter((f) => f.endsWith('.crt')).sort().map((f) => {
    const pem = readFileSync(join(dir, f), 'utf8');
    return pem.endsWith('\n') ? pem : `${pem}\n`;
  }).join('');
}

/** The chunks dist/<entry>.js imports, statically or dynamically, transitively. */
function importClosure(entry) {
  const seen = new Set();
  const bare = new Set();
  const visit = (file) => {
    if (seen.has(file)) return;
    if (!existsSync(file)) throw new BuildError(`${relative(root, file)} is imported by the registrar bundle but missing: run npm run build`);
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    // esbuild's output: `import ... from "x";` / `import "x";` statements at the start of a
    // line, and `import("x")` for the lazily loaded chunks.
    const specs = [
      ...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)";$/gm),
      ...text.matchAll(/^import\s*"([^"]+)";$/gm),
      ...text.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g),
    ].map((m) => m[1]);
    for (const spec of specs) {
      if (spec.startsWith('./') || spec.startsWith('../')) visit(join(dirname(file), spec));
      else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) bare.add(spec);
    }
  };
  visit(entry);
  return { files: [...seen].sort(), bare: [...bare].sort() };
}

function sha256(buffer) {
  return createHash('sha256').update(buffer).digest('hex');
}

class ImageBuilder {
  constructor({ arch, version, epoch, work, debian }) {
    this.arch = arch;
    this.gnu = ARCHES[arch].gnu;
    this.version = version;
    this.epoch = epoch;
    this.work = join(work, arch);
    this.debian = debian;
    this.layout = join(this.work, 'layout');
    this.blobs = join(this.layout, 'blobs', 'sha256');
    rmSync(this.work, { recursive: true, force: true });
    mkdirSync(this.blobs, { recursive: true });
  }

  /** Writes a blob; returns its descriptor. */
  blob(mediaType, content) {
    const digest = sha256(content);
    writeFileSync(join(this.blobs, digest), content);
    return { mediaType, digest: `sha256:${digest}`, size: content.length };
  }

  /** Tars `dir` as one layer (gzip -n: no name, no time); returns the layer's descriptor and DiffID. */
  layer(name, dir, special = {}) {
    const tarFile = join(this.work, `${name}.tar`);
    const tar = new TarWriter(tarFile);
    for (const entry of treeEntries(dir, this.epoch, special)) tar.add(entry);
    const { diffId } = tar.finish();
    const gz = `${tarFile}.gz`;
    execFileSync('sh', ['-c', 'gzip -n -6 -c "$1" > "$2"', 'gzip', tarFile, gz]);
    rmSync(tarFile);
    const digest = sha256(readFileSync(gz));
    const size = statSync(gz).size;
    renameSync(gz, join(this.blobs, digest));
    return { descriptor: { mediaType: MEDIA.layer, digest: `sha256:${digest}`, size }, diffId };
  }

  baseLayer() {
    const dir = join(this.work, 'base');
    const packages = [];
    for (const name of DEBIAN_PACKAGES) {
      const deb = this.debian.fetch(name, this.arch);
      const unpacked = join(this.work, 'debs', name);
      const control = unpackDeb(deb.file, unpacked);
      if (name === 'ca-certificates') {
        mkdirSync(join(unpacked, 'etc/ssl/certs'), { recursive: true });
        writeFileSync(join(unpacked, 'etc/ssl/certs/ca-certificates.crt'), caBundle(unpacked));
      }
      prune(unpacked, name, this.gnu);
      cpSync(unpacked, dir, { recursive: true, verbatimSymlinks: true, force: false, errorOnExist: true });
      // The package's record, as distroless images keep it: scanners read status.d to find what is installed.
      const fields = parseControl(control);
      const record = control.replace(/^(Package: .*\n)/, '$1Status: install ok installed\n');
      mkdirSync(join(dir, 'var/lib/dpkg/status.d'), { recursive: true });
      writeFileSync(join(dir, 'var/lib/dpkg/status.d', name), record.endsWith('\n') ? record : `${record}\n`);
      packages.push({ name, version: fields.Version, architecture: fields.Architecture, source: deb.source, sha256: deb.sha256 });
    }
    const { name: user, uid, gid } = IMAGE.user;
    const etc = (file, text) => writeFileSync(join(dir, 'etc', file), text);
    etc('passwd', `root:x:0:0:root:/root:/sbin/nologin\n${user}:x:${uid}:${gid}:${user}:/home/${user}:/sbin/nologin\n`);
    etc('group', `root:x:0:\n${user}:x:${gid}:\n`);
    etc('nsswitch.conf', 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n');
    for (const d of ['tmp', 'root', `home/${user}`]) mkdirSync(join(dir, d), { recursive: true });
    const special = {
      tmp: { mode: 0o1777 },
      root: { mode: 0o700 },
      [`home/${user}`]: { mode: 0o700, uid, gid },
    };
    return { ...this.layer('base', dir, special), packages };
  }

  nodeLayer() {
    const dir = join(this.work, 'node');
    const node = unpackNode(this.arch, join(this.work, 'node-unpacked'));
    mkdirSync(join(dir, 'usr/bin'), { recursive: true });
    mkdirSync(join(dir, 'usr/share/doc/node'), { recursive: true });
    copyFileSync(node.binary, join(dir, 'usr/bin/node'));
    copyFileSync(node.license, join(dir, 'usr/share/doc/node/LICENSE'));
    return this.layer('node', dir);
  }

  appLayer(sbom) {
    const dir = join(this.work, 'app');
    const app = join(dir, 'app');
    mkdirSync(join(app, 'dist'), { recursive: true });
    // package.json and proto/ mark the package root the registrar loads its protos from.
    writeFileSync(join(app, 'package.json'), `${JSON.stringify({ name: pkg.name, version: this.version, description: pkg.description, license: pkg.license, type: 'module', private: true }, null, 2)}\n`);
    cpSync(join(root, 'proto'), join(app, 'proto'), { recursive: true });
    const { files, bare } = importClosure(join(root, 'dist', 'mesh-registrar.js'));
    // koffi (sd_notify) is the harness's, loaded only under systemd; anything else must be bundled.
    const unexpected = bare.filter((spec) => spec !== 'koffi');
    if (unexpected.length) throw new BuildError(`dist/mesh-registrar.js imports ${unexpected.join(', ')} from node_modules, which the image does not ship: bundle them (scripts/build.mjs)`);
    for (const file of files) {
      const to = join(app, 'dist', relative(join(root, 'dist'), file));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(file, to);
    }
    writeFileSync(join(app, 'sbom.json'), `${JSON.stringify(sbom, null, 2)}\n`);
    return this.layer('app', dir);
  }

  build() {
    const created = new Date(this.epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
    const base = this.baseLayer();
    const node = this.nodeLayer();
    const nodePackage = runtime.packages[NODE_ARCH[this.arch]];
    const sbom = {
      image: `${IMAGE.name}:${this.version}`,
      architecture: this.arch,
      created,
      application: { name: IMAGE.name, version: this.version, source: IMAGE.source, license: pkg.license, bundledNpmPackages: bundledPackages() },
      nodejs: { version: runtime.version, package: `${nodePackage.name}@${runtime.version}`, integrity: nodePackage.integrity },
      debian: { release: `${DEBIAN_RELEASE.version} (${DEBIAN_RELEASE.codename})`, packages: base.packages },
    };
    const app = this.appLayer(sbom);
    const layers = [base, node, app];
    const revision = gitRevision();
    const labels = {
      'org.opencontainers.image.title': IMAGE.name,
      'org.opencontainers.image.description': 'mesh-registrar, the cluster side of mesh-harness: turns harness registrations into Linkerd ExternalWorkloads',
      'org.opencontainers.image.version': this.version,
      'org.opencontainers.image.created': created,
      'org.opencontainers.image.source': IMAGE.source,
      ...(revision ? { 'org.opencontainers.image.revision': revision } : {}),
      'org.opencontainers.image.licenses': pkg.license,
      'dev.mesh-harness.image.nodejs': runtime.version,
      'dev.mesh-harness.image.debian-packages': base.packages.map((p) => `${p.name}=${p.version}`).join(' '),
    };
    const { uid, gid } = IMAGE.user;
    const config = {
      created,
      architecture: ARCHES[this.arch].platform.architecture,
      ...(ARCHES[this.arch].platform.variant ? { variant: ARCHES[this.arch].platform.variant } : {}),
      os: 'linux',
      config: {
        User: `${uid}:${gid}`,
        ExposedPorts: Object.fromEntries(IMAGE.ports.map((p) => [`${p}/tcp`, {}])),
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Entrypoint: IMAGE.entrypoint,
        Cmd: IMAGE.cmd,
        WorkingDir: '/',
        Labels: labels,
        StopSignal: 'SIGTERM',
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: [
        { created, created_by: `scripts/image.mjs: Debian ${DEBIAN_RELEASE.version} base (${base.packages.map((p) => `${p.name} ${p.version}`).join(', ')})` },
        { created, created_by: `scripts/image.mjs: Node.js ${runtime.version} as /usr/bin/node` },
        { created, created_by: `scripts/image.mjs: mesh-registrar ${this.version} in /app` },
      ],
    };
    const configDescriptor = this.blob(MEDIA.config, Buffer.from(JSON.stringify(config)));
    const manifest = {
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: configDescriptor,
      layers: layers.map((l) => l.descriptor),
      annotations: { 'org.opencontainers.image.version': this.version, 'org.opencontainers.image.created': created },
    };
    const manifestDescriptor = this.blob(MEDIA.manifest, Buffer.from(JSON.stringify(manifest)));
    const index = {
      schemaVersion: 2,
      mediaType: MEDIA.index,
      manifests: [{
        ...manifestDescriptor,
        platform: ARCHES[this.arch].platform,
        annotations: {
          // podman load and skopeo name the image from ref.name, containerd (ctr, docker) from its own key.
          'org.opencontainers.image.ref.name': `${IMAGE.name}:${this.version}`,
          'io.containerd.image.name': `docker.io/library/${IMAGE.name}:${this.version}`,
        },
      }],
    };
    writeFileSync(join(this.layout, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
    writeFileSync(join(this.layout, 'index.json'), `${JSON.stringify(index)}\n`);
    return { manifestDigest: manifestDescriptor.digest, layers, config };
  }

  /** The layout as one uncompressed tar (its layers are gzipped already). */
  archive(file) {
    const partial = `${file}.partial`;
    const tar = new TarWriter(partial);
    for (const entry of treeEntries(this.layout, this.epoch)) tar.add(entry);
    tar.finish();
    renameSync(partial, file);
  }
}

function gitRevision() {
  try {
    return execFileSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

const USAGE = 'usage: node scripts/image.mjs [--out DIR] [--arch amd64|arm64]... [--version VERSION]';

await runScript('image', async () => {
  let args;
  try {
    args = parseArgs({
      options: {
        out: { type: 'string', default: join(root, 'dist', 'image') },
        arch: { type: 'string', multiple: true },
        version: { type: 'string' },
      },
    }).values;
  } catch (error) {
    throw new BuildError(`${error.message}\n${USAGE}`, 64);
  }
  const arches = args.arch ?? Object.keys(ARCHES);
  for (const a of arches) if (!ARCHES[a]) throw new BuildError(`unknown --arch ${a}: use amd64 or arm64`, 64);
  const version = args.version ?? pkg.version;
  // A tag: letters, digits, . _ - (+ is not allowed in image tags).
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(version)) throw new BuildError(`--version ${version}: use letters, digits and . _ - only (it becomes the image tag)`, 64);
  if (!existsSync(join(root, 'dist', 'mesh-registrar.js'))) throw new BuildError('dist/mesh-registrar.js is missing: run npm run build first (npm run image does)', 69);
  const epoch = sourceDateEpoch();

  const outDir = args.out;
  const work = join(outDir, '.work');
  mkdirSync(work, { recursive: true });
  const log = (line) => process.stderr.write(`image: ${line}\n`);
  const debian = new DebianArchive({
    cacheDir: process.env.MESH_IMAGE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'mesh-harness', 'debian'),
    arches,
    log,
  });
  debian.update();
  for (const arch of arches) {
    const builder = new ImageBuilder({ arch, version, epoch, work, debian });
    const { manifestDigest } = builder.build();
    const file = join(outDir, `${IMAGE.name}-${version}-${arch}.oci.tar`);
    builder.archive(file);
    rmSync(builder.work, { recursive: true, force: true });
    process.stdout.write(`${file}\t${statSync(file).size}\t${manifestDigest}\n`);
  }
  rmSync(work, { recursive: true, force: true });
});
