/**
 * `mesh-harness proxy install` against a real registry (Debian's docker-registry, the CNCF
 * distribution server) holding images pushed with skopeo: a multi-platform index with a
 * different stand-in proxy per architecture, pulled, verified, extracted and run; refused
 * when a blob was tampered with in the registry's storage, when the image has no build for
 * this machine, and when its binary is built for another; the same from an OCI archive;
 * and through token authentication with a pull secret. Runs the bundled CLI (dist/).
 */
import t from 'tap';
import { createServer } from 'node:http';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { AdminStatus } from '../../../src/admin/server.ts';
import { cleanEnv, runCli } from '../../helpers/cli.ts';
import { standInProxy, writeLayout, type LayerFile, type TestImage } from '../../helpers/oci-image.ts';
import { SKIP_WITHOUT_REGISTRY } from '../../helpers/host.ts';
import { startRegistry } from '../../helpers/registry.ts';
import { freePort, tempDir } from '../../helpers/tmp.ts';

const BINARY = 'usr/lib/linkerd/linkerd2-proxy';
const VERSION_FILE = 'usr/lib/linkerd/linkerd2-proxy-version.txt';
const HOST_ARCH = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch;
const OTHER_ARCH = HOST_ARCH === 'amd64' ? 'arm64' : 'amd64';

/** Bottom layer: an older proxy; top layer: the release's, plus its version file. */
function proxyImage(arch: string, tag: string): TestImage {
  return {
    architecture: arch,
    layers: [
      [{ path: 'usr', type: 'dir' }, { path: 'usr/lib', type: 'dir' }, { path: 'usr/lib/linkerd', type: 'dir' }, { path: BINARY, data: standInProxy(`proxy ${arch} older`) }],
      [{ path: BINARY, data: standInProxy(`proxy ${arch} ${tag}`) }, { path: VERSION_FILE, data: 'v2.290.0\n' }, { path: 'usr/lib/linkerd/LICENSE', data: 'Apache-2.0' }],
    ],
  };
}

/** A configuration whose proxy.binary is in `dir`, and whose admin port nothing listens on (unless given). */
function configFile(dir: string, adminPort: number): string {
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ proxy: { binary: join(dir, 'bin', 'linkerd2-proxy') }, admin: { port: adminPort } }));
  return file;
}

function install(args: string[]) {
  return runCli(['proxy', 'install', ...args], { env: cleanEnv(), timeoutMs: 120_000 });
}

/** Files in a directory other than the binary and its record: leftovers of an install. */
function strays(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f !== 'linkerd2-proxy' && f !== 'linkerd2-proxy.install.json') : [];
}

t.test('proxy install from a real registry', { skip: SKIP_WITHOUT_REGISTRY }, async (t) => {
  const registry = await startRegistry(t);
  const work = tempDir(t, 'mh-install-');
  const tag = 'edge-25.4.1';
  const layout = writeLayout(join(work, 'layout'), [proxyImage(HOST_ARCH, tag), proxyImage(OTHER_ARCH, tag)], { refName: tag });
  await registry.push(layout.dir, tag, `linkerd/proxy:${tag}`);
  const image = `${registry.address}/linkerd/proxy:${tag}`;
  const config = configFile(work, await freePort());
  const binary = join(work, 'bin', 'linkerd2-proxy');

  t.test("the multi-platform image: this machine's binary, from the top layer, verified, recorded, runnable", async (t) => {
    const result = await install(['--image', image, '--config', config]);
    t.equal(result.exitCode, 0, result.stderr);
    t.match(result.stdout, new RegExp(`linux/${HOST_ARCH}.* image ${layout.images[0]!.manifestDigest} \\(from index ${layout.topDigest}\\): 2 layers`));
    t.match(result.stdout, /layer 2\/2 sha256:[a-f0-9]{64} verified/);
    t.equal((statSync(binary).mode & 0o777).toString(8), '755');
    const ran = await execa(binary, [], { reject: false });
    t.equal(ran.stdout, `proxy ${HOST_ARCH} ${tag}`, 'the top layer wins, and the binary runs');
    const record = JSON.parse(readFileSync(`${binary}.install.json`, 'utf8')) as Record<string, unknown>;
    t.match(record, { schemaVersion: 1, binary, version: tag, proxyVersion: 'v2.290.0', source: image, sourceKind: 'registry', manifestDigest: layout.images[0]!.manifestDigest, indexDigest: layout.topDigest, platform: new RegExp(`^linux/${HOST_ARCH}`) });
    t.same(strays(join(work, 'bin')), [], 'no temporary file left');

    const version = await runCli(['version', '--json', '--config', config]);
    t.match(JSON.parse(version.stdout), { proxy: { path: binary, install: { state: 'recorded', version: tag, proxyVersion: 'v2.290.0' } } }, 'version reports the installed release');
  });

  t.test('the same image again writes nothing; --force and a binary changed by hand reinstall', async (t) => {
    const files = () => ({ binary: statSync(binary), record: statSync(`${binary}.install.json`) });
    const before = files();
    const again = await install(['--image', image, '--config', config]);
    t.equal(again.exitCode, 0, again.stderr);
    t.match(again.stdout, new RegExp(`already installed ${binary}: ${tag}`));
    t.notMatch(again.stdout, /layer \d+\/\d+/, 'no layer was fetched');
    const after = files();
    t.same([after.binary.ino, after.binary.mtimeMs, after.record.ino, after.record.mtimeMs], [before.binary.ino, before.binary.mtimeMs, before.record.ino, before.record.mtimeMs], 'neither the binary nor its record was rewritten');

    const forced = await install(['--image', image, '--config', config, '--force']);
    t.equal(forced.exitCode, 0, forced.stderr);
    t.match(forced.stdout, /layer 2\/2 sha256:[a-f0-9]{64} verified/);
    t.match(forced.stdout, new RegExp(`^installed ${binary}: `, 'm'));
    t.not(statSync(binary).ino, before.binary.ino, '--force wrote a new binary');

    writeFileSync(binary, standInProxy('replaced by hand'));
    const healed = await install(['--image', image, '--config', config]);
    t.equal(healed.exitCode, 0, healed.stderr);
    t.match(healed.stdout, new RegExp(`^installed ${binary}: `, 'm'), 'a binary that no longer matches its record is replaced');
    t.equal((await execa(binary, [], { reject: false })).stdout, `proxy ${HOST_ARCH} ${tag}`);
  });

  t.test('another architecture on request, into another directory', async (t) => {
    const dest = join(work, 'other');
    const result = await install(['--image', image, '--arch', OTHER_ARCH, '--dest', dest, '--config', config]);
    t.equal(result.exitCode, 0, result.stderr);
    t.equal(readFileSync(join(dest, 'linkerd2-proxy'), 'utf8'), standInProxy(`proxy ${OTHER_ARCH} ${tag}`));
    t.match(result.stdout, /for another machine/);
    const refused = await install(['--image', image, '--arch', OTHER_ARCH, '--config', config]);
    t.equal(refused.exitCode, 64, 'without --dest it would replace this machine\'s proxy');
    t.match(refused.stderr, /is not this machine's .* add --dest DIR/);
  });

  t.test('a wrong architecture is refused: no build in the index, a single-platform image of another, a binary for another machine', async (t) => {
    const dest = join(work, 'wrong');
    const none = await install(['--image', image, '--arch', 's390x', '--dest', dest, '--config', config]);
    t.equal(none.exitCode, 65);
    t.match(none.stderr, new RegExp(`has no linux/s390x image \\(it has linux/${HOST_ARCH}.*, linux/${OTHER_ARCH}`));

    const single = writeLayout(join(work, 'single'), [proxyImage(OTHER_ARCH, 'x')], { refName: 'x' });
    await registry.push(single.dir, 'x', 'linkerd/proxy:other-only');
    const other = await install(['--image', `${registry.address}/linkerd/proxy:other-only`, '--dest', dest, '--config', config]);
    t.equal(other.exitCode, 65);
    t.match(other.stderr, new RegExp(`is a linux/${OTHER_ARCH}(/v8)? image, not linux/${HOST_ARCH}`));

    // The manifest says this machine's architecture; the ELF header says otherwise.
    const elf = Buffer.alloc(64);
    elf.write('\x7fELF', 0, 'latin1');
    elf[4] = 2;
    elf[5] = 1;
    elf.writeUInt16LE(HOST_ARCH === 'amd64' ? 183 : 62, 18);
    const lying = writeLayout(join(work, 'lying'), [{ architecture: HOST_ARCH, layers: [[{ path: BINARY, data: elf }]] }], { refName: 'lie' });
    await registry.push(lying.dir, 'lie', 'linkerd/proxy:lie');
    const lie = await install(['--image', `${registry.address}/linkerd/proxy:lie`, '--dest', dest, '--config', config]);
    t.equal(lie.exitCode, 65);
    t.match(lie.stderr, new RegExp(`is built for ${OTHER_ARCH}, not ${HOST_ARCH}, whatever its manifest says`));
    t.same(strays(dest), [], 'nothing written');
    t.notOk(existsSync(join(dest, 'linkerd2-proxy')));
  });

  t.test('a tampered layer or config in the registry is refused; the installed proxy stays', async (t) => {
    // Content of its own, so its blobs are not shared with the images above.
    const victim = writeLayout(join(work, 'victim'), [proxyImage(HOST_ARCH, 'victim')], { refName: 'victim' });
    await registry.push(victim.dir, 'victim', 'victim/proxy:1');
    const before = readFileSync(binary);
    const recordBefore = readFileSync(`${binary}.install.json`);

    const layerFile = registry.blobFile(victim.images[0]!.layerDigests[1]!);
    const good = readFileSync(layerFile);
    const bad = Buffer.from(good);
    bad[bad.length - 10]! ^= 0xff;
    writeFileSync(layerFile, bad);
    const tampered = await install(['--image', `${registry.address}/victim/proxy:1`, '--config', config]);
    t.equal(tampered.exitCode, 65);
    t.match(tampered.stderr, new RegExp(`layer 2/2 \\(${victim.images[0]!.layerDigests[1]}\\) .*: the content has digest sha256:[a-f0-9]{64}, not ${victim.images[0]!.layerDigests[1]}`));
    t.same(readFileSync(binary), before, 'the installed binary is unchanged');
    t.same(readFileSync(`${binary}.install.json`), recordBefore, 'and so is its record');
    t.same(strays(join(work, 'bin')), [], 'no temporary file left');
    writeFileSync(layerFile, good);

    const configBlob = registry.blobFile(victim.images[0]!.configDigest);
    const config0 = readFileSync(configBlob);
    writeFileSync(configBlob, Buffer.from(config0.toString('utf8').replace(`"${HOST_ARCH}"`, `"${HOST_ARCH.replace(/.$/, (c) => (c === 'x' ? 'y' : 'x'))}"`)));
    const badConfig = await install(['--image', `${registry.address}/victim/proxy:1`, '--config', config]);
    t.equal(badConfig.exitCode, 65);
    t.match(badConfig.stderr, /config of .*: the content has digest sha256:[a-f0-9]{64}, not sha256:/);
    writeFileSync(configBlob, config0);

    const healed = await install(['--image', `${registry.address}/victim/proxy:1`, '--dest', join(work, 'victim-ok'), '--config', config]);
    t.equal(healed.exitCode, 0, `the untampered image installs: ${healed.stderr}`);
  });

  t.test('--from an OCI archive (air-gapped), with the same checks', async (t) => {
    const archive = join(work, 'proxy.oci.tar');
    const copied = await execa('skopeo', ['copy', '--all', `oci:${layout.dir}:${tag}`, `oci-archive:${archive}:${tag}`], { reject: false, all: true });
    t.equal(copied.exitCode, 0, copied.all);
    const dest = join(work, 'airgap');
    const result = await install(['--from', archive, '--dest', dest, '--config', config]);
    t.equal(result.exitCode, 0, result.stderr);
    t.equal((await execa(join(dest, 'linkerd2-proxy'), [])).stdout, `proxy ${HOST_ARCH} ${tag}`);
    t.match(JSON.parse(readFileSync(join(dest, 'linkerd2-proxy.install.json'), 'utf8')), { version: tag, source: archive, sourceKind: 'oci-layout', indexDigest: layout.topDigest });

    // A layout directory whose layer was altered after it was written.
    const altered = writeLayout(join(work, 'altered'), [proxyImage(HOST_ARCH, 'altered')], { refName: 'altered' });
    const blob = join(altered.dir, 'blobs', 'sha256', altered.images[0]!.layerDigests[0]!.slice(7));
    const bytes = readFileSync(blob);
    bytes[20]! ^= 0x01;
    writeFileSync(blob, bytes);
    const refused = await install(['--from', altered.dir, '--dest', join(work, 'altered-out'), '--config', config]);
    t.equal(refused.exitCode, 65);
    t.match(refused.stderr, /layer 1\/2 .*(digest sha256:[a-f0-9]{64}, not|incorrect header check|invalid)/);
    t.notOk(existsSync(join(work, 'altered-out', 'linkerd2-proxy')));

    const notOci = join(work, 'not-oci.tar');
    writeFileSync(notOci, Buffer.alloc(1024));
    const junk = await install(['--from', notOci, '--dest', join(work, 'junk'), '--config', config]);
    t.equal(junk.exitCode, 65);
    t.match(junk.stderr, /holds no OCI image layout|not an OCI image layout/);
  });

  t.test('token authentication: anonymous is refused, the pull secret is used', async (t) => {
    const locked = await startRegistry(t, { storage: registry.storage, tokenAuth: { username: 'robot', password: 's3cret' } });
    const lockedImage = `${locked.address}/linkerd/proxy:${tag}`;
    const dest = join(work, 'auth');
    const anonymous = await install(['--image', lockedImage, '--dest', dest, '--config', config]);
    t.equal(anonymous.exitCode, 1);
    t.match(anonymous.stderr, /refused an anonymous pull .*pass --pull-secret FILE/);

    const secret = join(work, 'pull-secret.json');
    writeFileSync(secret, JSON.stringify({ auths: { [locked.address]: { auth: Buffer.from('robot:s3cret').toString('base64') } } }));
    chmodSync(secret, 0o600);
    const pulled = await install(['--image', lockedImage, '--pull-secret', secret, '--dest', dest, '--config', config]);
    t.equal(pulled.exitCode, 0, pulled.stderr);
    t.equal(pulled.stderr, '', 'no warning for a 0600 secret with an entry for the registry');
    t.equal((await execa(join(dest, 'linkerd2-proxy'), [])).stdout, `proxy ${HOST_ARCH} ${tag}`);
    t.ok(locked.tokenRequests.some((r) => r.authenticated && r.scope === 'repository:linkerd/proxy:pull'), JSON.stringify(locked.tokenRequests));

    writeFileSync(secret, JSON.stringify({ auths: { [locked.address]: { username: 'robot', password: 'wrong' } } }));
    const wrong = await install(['--image', lockedImage, '--pull-secret', secret, '--dest', dest, '--config', config]);
    t.equal(wrong.exitCode, 1);
    t.match(wrong.stderr, /refused the pull secret's credentials/);
  });
});

t.test('without --image: the control plane image from the running harness, or a clear refusal', async (t) => {
  const work = tempDir(t, 'mh-install-');
  const noDaemon = await install(['--config', configFile(work, await freePort())]);
  t.equal(noDaemon.exitCode, 69);
  t.match(noDaemon.stderr, /no --image, and the control plane's proxy image is learnt from the running harness, but none answers on 127\.0\.0\.1:\d+ .* pass --image cr\.l5d\.io\/linkerd\/proxy:<the cluster's Linkerd version>/);

  // A harness that registered but whose registrar named no image; then one that did.
  let registration: AdminStatus['components'][number] = { name: 'registration', phase: 'Ready', ready: true, since: new Date().toISOString(), message: 'registered as web-1' };
  const admin = createServer((_req, res) => {
    const status: AdminStatus = { ready: false, version: '0.1.0', pid: 1, startedAt: new Date().toISOString(), status: '', components: [registration] };
    res.end(JSON.stringify(status));
  });
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => admin.close(resolve)));
  const config = configFile(work, (admin.address() as { port: number }).port);
  const unknown = await install(['--config', config]);
  t.equal(unknown.exitCode, 69);
  t.match(unknown.stderr, /the registrar did not send one .*pass --image/);

  registration = { ...registration, detail: { controlPlaneProxy: { name: '127.0.0.1:1/linkerd/proxy', version: 'edge-25.4.1', image: '127.0.0.1:1/linkerd/proxy:edge-25.4.1' } } };
  const known = await install(['--config', config]);
  t.match(known.stdout, /from 127\.0\.0\.1:1\/linkerd\/proxy:edge-25\.4\.1 \(the control plane's proxy, as the registrar sent it\)/);
  t.equal(known.exitCode, 69, 'the registry on port 1 is unreachable');
  t.match(known.stderr, /cannot reach http:\/\/127\.0\.0\.1:1/);
});
