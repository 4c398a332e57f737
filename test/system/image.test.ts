/**
 * The mesh-registrar container image as `npm run image` builds it (scripts/image.mjs):
 * an OCI image layout whose every descriptor matches its blob, byte for byte the same when
 * built again, readable by skopeo (the tool the docs tell operators to push it with), and a
 * root filesystem that runs the registrar by itself. The layers are unpacked with GNU tar
 * into an empty directory and the registrar is started from it the way a container runtime
 * would: the image config's Entrypoint, Cmd, User and Env; chroot into the layers with the
 * root read-only (the Deployment's readOnlyRootFilesystem), /proc and a minimal /dev; the
 * Pod's volumes bind-mounted (the shipped registrar.json, the TLS Secret, the
 * ServiceAccount token); uid 65532, no_new_privs. Against a real kube-apiserver, with the
 * in-cluster configuration and deploy/kubernetes's RBAC, it serves a harness whose
 * ExternalWorkload turns Ready.
 *
 * Needs root (mounts, chroot), apt-get and dpkg-deb (the base is Debian packages), skopeo,
 * and for the last part kube-apiserver; under CI none of it skips.
 */
import t, { type Test } from 'tap';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import yaml from 'js-yaml';
import { workloadName } from '../../src/protocol/workload-name.ts';
import type { ExternalWorkload } from '../../src/registrar/store.ts';
import { httpGet } from '../helpers/http.ts';
import { KubeCluster, REGISTRAR_NAMESPACE, REGISTRAR_SERVICE_ACCOUNT, SKIP_WITHOUT_KUBE } from '../helpers/kube.ts';
import { groupManifest, makePki, startHarness, TRUST_DOMAIN } from '../helpers/registrar.ts';
import { freePort, tempDir, waitFor } from '../helpers/tmp.ts';

const exec = promisify(execFile);
const run = async (cmd: string, args: string[], env?: NodeJS.ProcessEnv) => (await exec(cmd, args, { maxBuffer: 64 << 20, env: env ? { ...process.env, ...env } : process.env })).stdout;
const root = join(import.meta.dirname, '..', '..');
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const nodeVersion = (JSON.parse(readFileSync(join(root, 'packaging', 'node-runtime.json'), 'utf8')) as { version: string }).version;
// Two builds (gzip over a 120 MB runtime each), unpacking, and a kube-apiserver.
t.setTimeout(30 * 60_000);

const SKIP_WITHOUT_ROOT = process.getuid?.() === 0 || process.env.CI ? false : 'needs root: mounts and chroot';
const skopeoAvailable = spawnSync('skopeo', ['--version'], { stdio: 'ignore' }).status === 0;
const SKIP_WITHOUT_SKOPEO = skopeoAvailable || process.env.CI ? false : 'skopeo is not installed: apt-get install skopeo';

const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};
const ELF_MACHINE = { amd64: 0x3e, arm64: 0xb7 } as const;
type Arch = keyof typeof ELF_MACHINE;

interface Descriptor { mediaType: string; digest: string; size: number; platform?: Record<string, string>; annotations?: Record<string, string> }
interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  created: string;
  config: { User: string; Entrypoint: string[]; Cmd: string[]; Env: string[]; WorkingDir: string; ExposedPorts: Record<string, object>; Labels: Record<string, string> };
  rootfs: { type: string; diff_ids: string[] };
  history: unknown[];
}
interface Image { index: { schemaVersion: number; mediaType: string; manifests: Descriptor[] }; manifest: { schemaVersion: number; mediaType: string; config: Descriptor; layers: Descriptor[] }; config: ImageConfig; layers: string[] }

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const archiveName = (arch: Arch) => `mesh-registrar-${version}-${arch}.oci.tar`;

/** Unpacks an archive and checks every link index.json -> manifest -> config and layers: digest, size, media type. */
async function readImage(t: Test, archive: string, dir: string): Promise<Image> {
  mkdirSync(dir, { recursive: true });
  await run('tar', ['-xf', archive, '-C', dir]);
  t.same(JSON.parse(readFileSync(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' }, 'oci-layout');
  const blobs = join(dir, 'blobs', 'sha256');
  const referenced = new Set<string>();
  const blob = (descriptor: Descriptor, mediaType: string): Buffer => {
    t.equal(descriptor.mediaType, mediaType, `${descriptor.digest} is ${mediaType}`);
    const hex = /^sha256:([0-9a-f]{64})$/.exec(descriptor.digest)?.[1];
    if (!hex) throw new Error(`bad digest ${descriptor.digest}`);
    const content = readFileSync(join(blobs, hex));
    t.equal(sha256(content), hex, `${mediaType}: the blob's content hashes to its digest`);
    t.equal(content.length, descriptor.size, `${mediaType}: size as described`);
    referenced.add(hex);
    return content;
  };
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as Image['index'];
  t.equal(index.schemaVersion, 2);
  t.equal(index.mediaType, MEDIA.index);
  t.equal(index.manifests.length, 1, 'one image per archive');
  const manifest = JSON.parse(blob(index.manifests[0]!, MEDIA.manifest).toString('utf8')) as Image['manifest'];
  t.equal(manifest.schemaVersion, 2);
  t.equal(manifest.mediaType, MEDIA.manifest);
  const config = JSON.parse(blob(manifest.config, MEDIA.config).toString('utf8')) as ImageConfig;
  t.equal(config.rootfs.type, 'layers');
  t.equal(config.rootfs.diff_ids.length, manifest.layers.length, 'one DiffID per layer');
  const layers: string[] = [];
  manifest.layers.forEach((layer, i) => {
    const compressed = blob(layer, MEDIA.layer);
    t.equal(`sha256:${sha256(gunzipSync(compressed))}`, config.rootfs.diff_ids[i], `layer ${i}: the uncompressed tar hashes to its DiffID`);
    t.equal(compressed.readUInt32LE(4), 0, `layer ${i}: no timestamp in the gzip header`);
    layers.push(join(blobs, layer.digest.slice('sha256:'.length)));
  });
  t.same(readdirSync(blobs).sort(), [...referenced].sort(), 'no blob that nothing refers to');
  return { index, manifest, config, layers };
}

/** Unpacks the layers in order into `rootfs`, as root so owners and modes are the archive's. */
async function unpack(image: Image, rootfs: string): Promise<void> {
  mkdirSync(rootfs, { recursive: true });
  for (const layer of image.layers) await run('tar', ['-xzf', layer, '-C', rootfs, '--numeric-owner', '--same-permissions']);
}

function elfMachine(file: string): number | undefined {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(20);
    if (readSync(fd, head, 0, 20, 0) < 20 || head.toString('latin1', 0, 4) !== '\x7fELF') return undefined;
    return head.readUInt16LE(18);
  } finally {
    closeSync(fd);
  }
}

function walk(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel)).sort().flatMap((name) => {
    const path = rel ? `${rel}/${name}` : name;
    return lstatSync(join(dir, path)).isDirectory() ? [path, ...walk(dir, path)] : [path];
  });
}

const HOST_TOOLS = Object.fromEntries(['setpriv', 'chroot'].map((tool) => [tool, spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim() || tool])) as { setpriv: string; chroot: string };

interface Container {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * Starts the image's process the way a runtime does: a private mount namespace, the rootfs
 * bind-mounted read-only, /proc, a /dev with the usual devices, `mounts` bound read-only
 * (volumes), then chroot as the config's User with no_new_privs. `argv` replaces Cmd.
 * Mount points are created beforehand, as a runtime creates them before it makes the root
 * read-only.
 */
function startContainer(t: Test, rootfs: string, config: ImageConfig, options: { argv?: string[]; env?: Record<string, string>; mounts?: Array<{ source: string; target: string }> } = {}): Container {
  const [uid, gid] = config.config.User.split(':');
  const mounts = options.mounts ?? [];
  for (const dir of ['proc', 'dev', ...mounts.map((m) => m.target.slice(1))]) mkdirSync(join(rootfs, dir), { recursive: true });
  const script = [
    'set -e',
    'r=$1; shift',
    'mount --bind "$r" "$r"',
    'mount -t proc -o nosuid,nodev,noexec proc "$r/proc"',
    'mount -t tmpfs -o nosuid,mode=755 tmpfs "$r/dev"',
    'for d in null zero full random urandom tty; do touch "$r/dev/$d"; mount --bind "/dev/$d" "$r/dev/$d"; done',
    ...mounts.map((m) => `mount --bind '${m.source}' "$r${m.target}"; mount -o remount,bind,ro "$r${m.target}"`),
    'mount -o remount,bind,ro "$r"',
    // env -i: the image's environment and the Pod's, nothing of this process's (not even the test runner's NODE_OPTIONS).
    'exec env -i "$@"',
  ].join('\n');
  const env = [...config.config.Env, ...Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`)];
  const command = [...config.config.Entrypoint, ...(options.argv ?? config.config.Cmd)];
  const args = [rootfs, ...env, HOST_TOOLS.setpriv, '--no-new-privs', HOST_TOOLS.chroot, `--userspec=${uid}:${gid}`, `--groups=${gid}`, rootfs, ...command];
  const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, output: () => output, exited };
}

t.test('npm run image output', { skip: SKIP_WITHOUT_ROOT }, async (t) => {
  const dir = tempDir(t, 'mh-image-');
  const epoch = (await run('git', ['-C', root, 'log', '-1', '--format=%ct'])).trim();
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const built = await run('node', [join(root, 'scripts', 'image.mjs'), '--out', a], { SOURCE_DATE_EPOCH: epoch });
  const digests = Object.fromEntries(built.trim().split('\n').map((line) => {
    const [file, , digest] = line.split('\t');
    return [file!.split('/').pop()!, digest!];
  }));
  t.same(Object.keys(digests).sort(), [archiveName('amd64'), archiveName('arm64')], 'one archive per architecture');

  await t.test('a second build from the same inputs is byte-identical', async (t) => {
    const again = await run('node', [join(root, 'scripts', 'image.mjs'), '--arch', 'amd64', '--out', b], { SOURCE_DATE_EPOCH: epoch });
    t.equal(again.trim().split('\t')[2], digests[archiveName('amd64')], 'same manifest digest');
    t.equal(sha256(readFileSync(join(b, archiveName('amd64')))), sha256(readFileSync(join(a, archiveName('amd64')))), 'same archive bytes');
  });

  const images = {} as Record<Arch, Image>;
  for (const arch of ['amd64', 'arm64'] as const) {
    await t.test(`${arch}: index.json -> manifest -> config and layers, every digest verified`, async (t) => {
      images[arch] = await readImage(t, join(a, archiveName(arch)), join(dir, `layout-${arch}`));
      const { index, config } = images[arch];
      t.equal(index.manifests[0]!.digest, digests[arch === 'amd64' ? archiveName('amd64') : archiveName('arm64')], 'the digest the build printed');
      t.same(index.manifests[0]!.platform, arch === 'amd64' ? { architecture: 'amd64', os: 'linux' } : { architecture: 'arm64', os: 'linux', variant: 'v8' });
      t.equal(index.manifests[0]!.annotations?.['org.opencontainers.image.ref.name'], `mesh-registrar:${version}`);
      t.equal(config.architecture, arch);
      t.equal(config.os, 'linux');
      t.equal(config.created, new Date(Number(epoch) * 1000).toISOString().replace(/\.000Z$/, 'Z'), 'created is the commit time');
    });
  }
  const image = images.amd64;

  await t.test('the config matches what deploy/kubernetes expects of the image', async (t) => {
    const deployment = yaml.loadAll(readFileSync(join(root, 'deploy', 'kubernetes', 'deployment.yaml'), 'utf8'))
      .find((d) => (d as { kind?: string }).kind === 'Deployment') as { spec: { template: { spec: { securityContext: { runAsUser: number; runAsGroup: number; runAsNonRoot: boolean }; containers: Array<{ args: string[]; ports: Array<{ containerPort: number }> }> } } } };
    const pod = deployment.spec.template.spec;
    const { config } = image.config;
    t.equal(config.User, `${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`, 'User is the runAsUser:runAsGroup of the Deployment');
    t.equal(pod.securityContext.runAsNonRoot, true);
    t.same(config.Entrypoint, ['/usr/bin/node', '/app/dist/mesh-registrar.js']);
    t.same(config.Cmd, pod.containers[0]!.args, 'Cmd is the Deployment\'s args');
    t.same(Object.keys(config.ExposedPorts).sort(), pod.containers[0]!.ports.map((p) => `${p.containerPort}/tcp`).sort(), 'the container ports');
    t.match(config.Labels, {
      'org.opencontainers.image.version': version,
      'org.opencontainers.image.source': /^https:\/\//,
      'org.opencontainers.image.licenses': 'Apache-2.0',
      'dev.mesh-harness.image.nodejs': nodeVersion,
      'dev.mesh-harness.image.debian-packages': /\blibc6=2\.36-/,
    });
  });

  await t.test('skopeo reads the archive and copies it out, verifying every blob', { skip: SKIP_WITHOUT_SKOPEO }, async (t) => {
    const archive = `oci-archive:${join(a, archiveName('amd64'))}`;
    const raw = Buffer.from(await run('skopeo', ['inspect', '--raw', archive]));
    t.equal(`sha256:${sha256(raw)}`, digests[archiveName('amd64')], 'skopeo finds the manifest');
    const inspected = JSON.parse(await run('skopeo', ['inspect', '--config', archive])) as ImageConfig;
    t.same(inspected.config.Entrypoint, image.config.config.Entrypoint);
    // What `skopeo copy ... docker://registry/...` and `docker load` read.
    await run('skopeo', ['copy', '--quiet', '--insecure-policy', archive, `oci:${join(dir, 'copy')}:mesh-registrar`]);
    await run('skopeo', ['copy', '--quiet', '--insecure-policy', archive, `docker-archive:${join(dir, 'docker.tar')}:mesh-registrar:${version}`]);
    const dockerManifest = JSON.parse(await run('tar', ['-xOf', join(dir, 'docker.tar'), 'manifest.json'])) as Array<{ RepoTags: string[]; Layers: string[] }>;
    t.same(dockerManifest[0]!.RepoTags, [`docker.io/library/mesh-registrar:${version}`]);
    t.equal(dockerManifest[0]!.Layers.length, 3);
  });

  const rootfs = join(dir, 'rootfs');
  await t.test('the root filesystem: glibc, node and the registrar, nothing else to run', async (t) => {
    await unpack(image, rootfs);
    const paths = walk(rootfs);
    const programs = paths.filter((p) => lstatSync(join(rootfs, p)).isFile() && !/\.so(\.[0-9.]+)?$/.test(p) && elfMachine(join(rootfs, p)) !== undefined);
    t.same(programs, ['usr/bin/node'], 'the only program is node: no shell, no package manager');
    for (const p of paths.filter((p) => lstatSync(join(rootfs, p)).isFile() && elfMachine(join(rootfs, p)) !== undefined)) {
      t.equal(elfMachine(join(rootfs, p)), ELF_MACHINE.amd64, `${p} is x86-64`);
    }
    t.notOk(paths.some((p) => /^usr\/share\/(man|locale|info)\//.test(p) || (/^usr\/share\/doc\//.test(p) && !/\/(copyright|LICENSE)$/.test(p) && !lstatSync(join(rootfs, p)).isDirectory() && !lstatSync(join(rootfs, p)).isSymbolicLink())), 'no manuals, translations or documentation, only licences');
    t.ok(paths.includes('usr/share/doc/libc6/copyright') && paths.includes('usr/share/doc/node/LICENSE'), 'the licences stay');
    t.notOk(paths.some((p) => /\.map$|dev-(proxy|workload-api|cluster)/.test(p)), 'no source maps, no development stand-ins');
    t.ok(paths.includes('app/dist/mesh-registrar.js') && paths.includes('app/package.json') && paths.some((p) => p.startsWith('app/proto/')), 'the registrar, its package.json and protos');
    t.ok(readFileSync(join(rootfs, 'etc/ssl/certs/ca-certificates.crt'), 'utf8').split('BEGIN CERTIFICATE').length > 100, 'the CA bundle');

    t.match(readFileSync(join(rootfs, 'etc/passwd'), 'utf8'), /^nonroot:x:65532:65532:/m);
    t.match(readFileSync(join(rootfs, 'etc/group'), 'utf8'), /^nonroot:x:65532:/m);
    t.equal(lstatSync(join(rootfs, 'tmp')).mode & 0o7777, 0o1777, '/tmp is 1777');
    const notRoot = paths.filter((p) => lstatSync(join(rootfs, p)).uid !== 0 || lstatSync(join(rootfs, p)).gid !== 0);
    t.same(notRoot, ['home/nonroot'], 'everything is root\'s but the nonroot home');

    const sbom = JSON.parse(readFileSync(join(rootfs, 'app/sbom.json'), 'utf8')) as { nodejs: { version: string }; debian: { packages: Array<{ name: string; version: string }> }; application: { version: string } };
    t.equal(sbom.application.version, version);
    t.equal(sbom.nodejs.version, nodeVersion);
    t.equal(sbom.debian.packages.map((p) => `${p.name}=${p.version}`).join(' '), image.config.config.Labels['dev.mesh-harness.image.debian-packages'], 'sbom.json and the label list the same packages');
    for (const p of sbom.debian.packages) {
      t.match(readFileSync(join(rootfs, 'var/lib/dpkg/status.d', p.name), 'utf8'), new RegExp(`^Package: ${p.name.replace(/\+/g, '\\+')}\\nStatus: install ok installed\\n[^]*^Version: ${p.version.replace(/[+.~]/g, '\\$&')}$`, 'm'), `status.d/${p.name} for scanners`);
    }
  });

  await t.test('arm64: the same files, built for aarch64', async (t) => {
    const arm = join(dir, 'rootfs-arm64');
    await unpack(images.arm64, arm);
    t.equal(elfMachine(join(arm, 'usr/bin/node')), ELF_MACHINE.arm64, 'node');
    t.equal(elfMachine(join(arm, 'lib/aarch64-linux-gnu/libc.so.6')), ELF_MACHINE.arm64, 'libc');
    t.equal(elfMachine(join(arm, 'usr/lib/aarch64-linux-gnu/libstdc++.so.6')), ELF_MACHINE.arm64, 'libstdc++');
    t.same(walk(arm, 'app'), walk(rootfs, 'app'), 'the same application files');
  });

  await t.test('the registrar runs from the image alone, as 65532, with a read-only root', async (t) => {
    const version1 = startContainer(t, rootfs, image.config, { argv: ['version'] });
    t.equal(await version1.exited, 0, version1.output());
    t.equal(version1.output().trim(), `mesh-registrar ${version}`);
    const whoami = startContainer(t, rootfs, image.config, { argv: ['--help'] });
    t.equal(await whoami.exited, 0, whoami.output());
    t.match(whoami.output(), /usage: mesh-registrar run/);
    // The default command without its ConfigMap: the registrar says what is missing and exits 78.
    const noConfig = startContainer(t, rootfs, image.config);
    t.equal(await noConfig.exited, 78, noConfig.output());
    t.match(noConfig.output(), /\/etc\/mesh-registrar\/registrar\.json: cannot read the configuration file \(ENOENT\)/);
  });

  await t.test('in a cluster: the shipped config, the in-cluster ServiceAccount, a harness registers', { skip: SKIP_WITHOUT_KUBE }, async (t) => {
    const cluster = await KubeCluster.start(t);
    const pki = await makePki(t);
    const volumes = tempDir(t, 'mh-image-volumes-');
    // The ConfigMap: deploy/kubernetes/registrar.json, with ports free on this host (the test shares its network).
    const [grpcPort, adminPort] = [await freePort(), await freePort()];
    const shipped = JSON.parse(readFileSync(join(root, 'deploy', 'kubernetes', 'registrar.json'), 'utf8')) as Record<string, unknown>;
    mkdirSync(join(volumes, 'config'));
    writeFileSync(join(volumes, 'config', 'registrar.json'), JSON.stringify({ ...shipped, listen: `127.0.0.1:${grpcPort}`, adminListen: `127.0.0.1:${adminPort}` }));
    // The Secret mesh-registrar-tls (Secret volumes are world-readable files by default).
    mkdirSync(join(volumes, 'tls'));
    for (const [from, to] of [[pki.certFile, 'tls.crt'], [pki.keyFile, 'tls.key'], [pki.anchorsFile, 'ca.crt']] as const) {
      copyFileSync(from, join(volumes, 'tls', to));
    }
    // The projected ServiceAccount token, as the kubelet mounts it.
    const token = (await cluster.kubectl(['create', 'token', REGISTRAR_SERVICE_ACCOUNT, '-n', REGISTRAR_NAMESPACE, '--duration', '1h'])).stdout.trim();
    mkdirSync(join(volumes, 'sa'));
    writeFileSync(join(volumes, 'sa', 'token'), token);
    copyFileSync(join(cluster.dir, 'ca.crt'), join(volumes, 'sa', 'ca.crt'));
    writeFileSync(join(volumes, 'sa', 'namespace'), REGISTRAR_NAMESPACE);
    for (const f of ['config/registrar.json', 'tls/tls.crt', 'tls/tls.key', 'tls/ca.crt', 'sa/token', 'sa/ca.crt', 'sa/namespace']) await run('chmod', ['0644', join(volumes, f)]);

    const replica = 'mesh-registrar-image-0';
    const container = startContainer(t, rootfs, image.config, {
      env: { POD_NAME: replica, POD_NAMESPACE: REGISTRAR_NAMESPACE, KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(cluster.port) },
      mounts: [
        { source: join(volumes, 'config'), target: '/etc/mesh-registrar' },
        { source: join(volumes, 'tls'), target: '/var/run/mesh-registrar/tls' },
        { source: join(volumes, 'sa'), target: '/var/run/secrets/kubernetes.io/serviceaccount' },
      ],
    });
    await waitFor('the registrar in the image answers /readyz', async () => {
      if (container.child.exitCode !== null) throw new Error(`exited ${container.child.exitCode}:\n${container.output()}`);
      try {
        return (await httpGet(adminPort, '/readyz')).status === 200 ? true : undefined;
      } catch {
        return undefined;
      }
    }, 120_000, 250);
    t.equal((await httpGet(adminPort, '/healthz')).status, 200, '/healthz');
    t.match((await httpGet(adminPort, '/metrics')).body, /^mesh_registrar_sessions /m, '/metrics');
    const lease = await cluster.request('GET', `/apis/coordination.k8s.io/v1/namespaces/${REGISTRAR_NAMESPACE}/leases/mesh-registrar-${replica}`);
    t.equal(lease.status, 200, 'its Lease, written with the ServiceAccount\'s RBAC');

    const vm = `spiffe://${TRUST_DOMAIN}/vm/image`;
    await cluster.kubectl(['apply', '-f', '-'], { input: groupManifest({ name: 'image', namespace: 'default', allowedIdentities: [vm] }) });
    await startHarness(t, { pki, spiffeId: vm, registrarAddress: `127.0.0.1:${grpcPort}`, group: 'image', namespace: 'default', nodeName: 'vm-image' });
    const name = workloadName({ namespace: 'default', group: 'image', nodeName: 'vm-image', spiffeId: vm });
    const workload = await waitFor(`ExternalWorkload default/${name} Ready=True`, async () => {
      const { status, body } = await cluster.request('GET', `/apis/workload.linkerd.io/v1beta1/namespaces/default/externalworkloads/${name}`);
      const w = status === 200 ? (body as ExternalWorkload) : undefined;
      return w?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? w : undefined;
    }, 60_000, 200);
    t.equal(workload.spec.meshTLS.identity, vm, 'the harness\'s workload, written by the registrar in the image');

    container.child.kill('SIGTERM');
    t.equal(await container.exited, 0, 'SIGTERM: drained and stopped cleanly');
  });
});
