/**
 * The packages on a real machine: a minimal Debian 12 VM (scripts/build-test-vm.sh, cached
 * by its inputs) booted under qemu with systemd as PID 1. The guest runs
 * test/system/guest.sh from a 9p share at every boot (three boots, see the script): the
 * Ansible role in check mode on the fresh machine, offline install, the service under its
 * hardened unit running a real spire-agent against a real SPIRE server (test units) and the
 * development proxy, reload, restart, stop, a reboot, upgrades (one that refuses the
 * configuration), a configuration error, the Ansible role twice, remove with a broken
 * configuration and purge; then enrolling the bare machine with the Ansible role alone, which
 * registers it with a mesh-registrar run here over a real kube-apiserver (the guest reaches
 * it through qemu's restricted user network, nothing else); then the .rpm installed,
 * upgraded and erased with rpm's own database. Every check the script defines must come back
 * ok, and the ExternalWorkload must have been Ready=True with the guest's address.
 *
 * TCG by default (this kind of host has no usable hardware virtualisation);
 * MESH_VM_ACCEL=kvm on hosts that have it.
 */
import t from 'tap';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DevCa } from '../../src/dev/ca.ts';
import type { ExternalWorkload } from '../../src/registrar/store.ts';
import { writeLayout } from '../helpers/oci-image.ts';
import { tempDir } from '../helpers/tmp.ts';
import { SKIP_WITHOUT_VM } from '../helpers/host.ts';
import { KubeCluster, SKIP_WITHOUT_KUBE } from '../helpers/kube.ts';
import { groupManifest, makePki, REGISTRAR_ID, ReplicaProcess } from '../helpers/registrar.ts';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const BOOT_TIMEOUT_MS = 60 * 60_000;
const BOOTS = 3;
// Under TCG everything in the guest runs 10-20x slower; the boots are long.
t.setTimeout(BOOTS * BOOT_TIMEOUT_MS + 30 * 60_000);

const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const nodeVersion = (JSON.parse(readFileSync(join(root, 'packaging', 'node-runtime.json'), 'utf8')) as { version: string }).version;
const guestScript = readFileSync(join(import.meta.dirname, 'guest.sh'), 'utf8');

/** Every check name guest.sh reports; its loop over the two Ansible runs is expanded. */
function expectedChecks(): string[] {
  const names = [...guestScript.matchAll(/^\s*check "([^"]+)"/gm)].map((m) => m[1]!);
  return names.flatMap((name) => (name.includes('$run') ? [name.replace('$run', '1'), name.replace('$run', '2')] : [name]));
}

/**
 * A build that refuses the configurations the others accept, as a downgrade or a stricter
 * upgrade would: `from` repacked as `version` with proxy.shutdownGrace renamed in its
 * configuration schema, so a file that sets it has an unknown key.
 */
async function strictBuild(from: string, to: string, version: string, work: string): Promise<void> {
  await run('dpkg-deb', ['-R', from, work]);
  const control = join(work, 'DEBIAN', 'control');
  writeFileSync(control, readFileSync(control, 'utf8').replace(/^Version: .*$/m, `Version: ${version}`));
  const chunks = join(work, 'usr', 'lib', 'mesh-harness', 'dist', 'chunks');
  const schema = readdirSync(chunks).map((f) => join(chunks, f)).filter((f) => readFileSync(f, 'utf8').includes('shutdownGrace: { doc:'));
  if (schema.length !== 1) throw new Error(`expected one chunk with the configuration schema, found ${schema.length}`);
  writeFileSync(schema[0]!, readFileSync(schema[0]!, 'utf8').replace('shutdownGrace: { doc:', 'shutdownGracePeriod: { doc:'));
  await run('dpkg-deb', ['--root-owner-group', '-Znone', '--build', work, to]);
}

/** Where the guest finds the registrar: qemu forwards this address (and only this) to `forwarder`. */
const GUEST_REGISTRAR = { ip: '10.0.2.100', port: 8443 };
const GUEST_IP = '10.0.2.15';
const ENROLL_NAMESPACE = 'vms';

/**
 * The program qemu runs for each guest connection to GUEST_REGISTRAR (guestfwd `cmd:`, the
 * connection on its stdin and stdout): it relays to the registrar on this host's loopback.
 */
function writeForwarder(dir: string, registrarAddress: string): string {
  const [host, port] = registrarAddress.split(':');
  writeFileSync(join(dir, 'forward.mjs'), `import { connect } from 'node:net';
const s = connect(${Number(port)}, ${JSON.stringify(host)});
process.stdin.pipe(s);
s.pipe(process.stdout);
process.stdin.on('end', () => s.end());
s.on('close', () => process.exit(0));
s.on('error', () => process.exit(1));
`);
  const path = join(dir, 'forward');
  writeFileSync(path, `#!/bin/sh\nunset NODE_OPTIONS\nexec ${process.execPath} ${join(dir, 'forward.mjs')}\n`, { mode: 0o755 });
  return path;
}

function boot(image: { kernel: string; initrd: string }, overlay: string, share: string, consoleLog: string, forwarder: string): { child: ChildProcess; exited: Promise<number | null> } {
  const accel = process.env.MESH_VM_ACCEL ?? 'tcg';
  // setpriv --pdeathsig: qemu dies with this test process even when it is killed outright.
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'qemu-system-x86_64',
    '-accel', accel, '-m', '2048', '-smp', '2', '-no-reboot',
    '-kernel', image.kernel, '-initrd', image.initrd,
    '-append', 'root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0 panic=-1',
    '-drive', `file=${overlay},if=virtio,format=qcow2`,
    '-virtfs', `local,path=${share},mount_tag=share,security_model=none,id=share`,
    // restrict=on: the guest reaches neither this host nor beyond it, except the registrar.
    '-nic', `user,model=virtio-net-pci,restrict=on,guestfwd=tcp:${GUEST_REGISTRAR.ip}:${GUEST_REGISTRAR.port}-cmd:${forwarder}`,
    '-display', 'none', '-monitor', 'none', '-serial', `file:${consoleLog}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => {
      if (code !== 0 && stderr) process.stderr.write(`qemu: ${stderr}`);
      resolve(code);
    });
  });
  return { child, exited };
}

t.test('the .deb in a real Debian 12 machine with systemd', { skip: SKIP_WITHOUT_VM || SKIP_WITHOUT_KUBE }, async (t) => {
  const started = Date.now();
  const dir = tempDir(t, 'mh-packaging-vm-');
  const share = join(dir, 'share');
  mkdirSync(join(share, 'out'), { recursive: true });

  const built = await run('bash', [join(root, 'scripts', 'build-test-vm.sh')], { maxBuffer: 1 << 20 });
  const vars = Object.fromEntries(built.stdout.trim().split('\n').map((l) => l.split(/=(.*)/s) as [string, string]));
  const image = { qcow2: vars.VM_IMAGE!, kernel: vars.VM_KERNEL!, initrd: vars.VM_INITRD! };
  t.ok(existsSync(image.qcow2) && existsSync(image.kernel) && existsSync(image.initrd), `VM image ${image.qcow2}`);
  const imageReadyAt = Date.now();

  // Builds of the same code: the release, a newer one to upgrade to (.deb and .rpm), one
  // more for the Ansible role to upgrade to, and one that refuses the configuration the
  // others accept. Compression is irrelevant to what gets installed, so these skip it.
  const pkg = (v: string, formats: string[]) => run('node', [join(root, 'scripts', 'package.mjs'), '--arch', 'amd64', ...formats.flatMap((f) => ['--format', f]), '--compression', 'none', '--version', v, '--out', share], { maxBuffer: 1 << 20 });
  await pkg(version, ['deb', 'rpm']);
  await pkg(`${version}+systest1`, ['deb', 'rpm']);
  await pkg(`${version}+systest3`, ['deb']);
  rmSync(join(share, '.work'), { recursive: true, force: true });
  const names = {
    'base-deb': `mesh-harness_${version}_amd64.deb`,
    'upgrade-deb': `mesh-harness_${version}+systest1_amd64.deb`,
    'strict-deb': `mesh-harness_${version}+systest2_amd64.deb`,
    'ansible-deb': `mesh-harness_${version}+systest3_amd64.deb`,
    'base-rpm': `mesh-harness-${version}-1.x86_64.rpm`,
    'upgrade-rpm': `mesh-harness-${version}+systest1-1.x86_64.rpm`,
  };
  await strictBuild(join(share, names['upgrade-deb']), join(share, names['strict-deb']), `${version}+systest2`, join(dir, 'strict'));
  for (const [key, name] of Object.entries(names)) {
    t.ok(existsSync(join(share, name)), `${key}: ${name}`);
    writeFileSync(join(share, key), name);
  }

  // A real SPIRE server and agent in the guest (pinned, scripts/install-spire.sh), signing
  // under an upstream CA made here: it is the mesh's trust anchor.
  mkdirSync(join(share, 'bin'));
  for (const binary of ['spire-server', 'spire-agent']) {
    const found = ['/usr/local/bin', '/usr/bin'].map((d) => join(d, binary)).find((p) => existsSync(p));
    if (!found) throw new Error(`${binary} is not installed: bash scripts/install-spire.sh /usr/local/bin`);
    try {
      linkSync(found, join(share, 'bin', binary));
    } catch {
      copyFileSync(found, join(share, 'bin', binary));
    }
  }
  const ca = await DevCa.create({ trustDomain: 'root.linkerd.cluster.local', ttlMs: 30 * 24 * 3600_000 });
  mkdirSync(join(share, 'spire'));
  writeFileSync(join(share, 'spire', 'upstream.pem'), ca.certPem);
  writeFileSync(join(share, 'spire', 'upstream.key'), ca.keyPem, { mode: 0o600 });
  // The cluster side of enrolling: a real kube-apiserver, the group, and mesh-registrar
  // trusting the upstream CA the guest's SPIRE server signs under.
  const cluster = await KubeCluster.start(t);
  await cluster.kubectl(['create', 'namespace', ENROLL_NAMESPACE]);
  await cluster.kubectl(['apply', '-f', '-'], { input: groupManifest({ name: 'web', namespace: ENROLL_NAMESPACE, allowedIdentities: ['spiffe://root.linkerd.cluster.local/vm/web'], allowedIPs: [`${GUEST_IP}/32`], serverName: 'web.default.vm.cluster.local' }) });
  const pki = await makePki(t, 'root.linkerd.cluster.local', ca);
  const registrar = await ReplicaProcess.start(t, { replica: 'vm-test', pki, kubeconfig: cluster.registrarKubeconfig, grace: '30s', ttl: '2h' });
  const forwarder = writeForwarder(dir, registrar.grpcAddress);
  writeFileSync(join(share, 'registrar-address'), `${GUEST_REGISTRAR.ip}:${GUEST_REGISTRAR.port}`);
  writeFileSync(join(share, 'registrar-identity'), REGISTRAR_ID);
  writeFileSync(join(share, 'registrar-namespace'), ENROLL_NAMESPACE);
  // What the cluster saw: the first ExternalWorkload that was Ready=True, polled all along.
  let enrolled: ExternalWorkload | undefined;
  let polling = true;
  const poller = (async () => {
    while (polling && !enrolled) {
      const { status, body } = await cluster.request('GET', `/apis/workload.linkerd.io/v1beta1/namespaces/${ENROLL_NAMESPACE}/externalworkloads`).catch(() => ({ status: 0, body: undefined }));
      if (status === 200) enrolled = (body as { items: ExternalWorkload[] }).items.find((w) => w.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
  t.teardown(() => {
    polling = false;
  });

  // The development stand-ins, only ever on the share and in the guest's /opt/mesh-ci.
  for (const part of ['package.json', 'proto', 'dist']) cpSync(join(root, part), join(share, 'app', part), { recursive: true });
  cpSync(join(root, 'deploy', 'ansible'), join(share, 'ansible'), { recursive: true });
  // The proxy image the role installs when enrolling (an OCI archive, as for an air-gapped
  // host): Linkerd's layout, with a binary that starts the guest's development stand-in.
  const proxyLayout = writeLayout(join(dir, 'proxy-layout'), [{
    architecture: 'amd64',
    layers: [[
      { path: 'usr', type: 'dir' }, { path: 'usr/lib', type: 'dir' }, { path: 'usr/lib/linkerd', type: 'dir' },
      { path: 'usr/lib/linkerd/linkerd2-proxy', data: '#!/bin/sh\nexec /opt/mesh-ci/linkerd2-proxy "$@"\n', mode: 0o755 },
      { path: 'usr/lib/linkerd/linkerd2-proxy-version.txt', data: 'v0.0.0-vm\n' },
    ]],
  }], { refName: 'vm-test' });
  mkdirSync(join(share, 'proxy'));
  await run('skopeo', ['copy', '-q', `oci:${proxyLayout.dir}:vm-test`, `oci-archive:${join(share, 'proxy', 'linkerd2-proxy.oci.tar')}:vm-test`]);
  writeFileSync(join(share, 'node-version'), nodeVersion);
  writeFileSync(join(share, 'guest.sh'), guestScript);

  const overlay = join(dir, 'overlay.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', image.qcow2, overlay]);

  let qemu: ChildProcess | undefined;
  t.teardown(() => {
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
  });
  const bootTimes: number[] = [];
  // Boot 1 installs and ends in a reboot; boot 2 checks the enabled service came back and
  // goes on to upgrades, Ansible and purge; boot 3 is the .rpm. -no-reboot turns each
  // reboot into a qemu exit.
  for (let n = 1; n <= BOOTS && !existsSync(join(share, 'out', 'done')); n++) {
    const bootStart = Date.now();
    const vm = boot(image, overlay, share, join(dir, `console-${n}.log`), forwarder);
    qemu = vm.child;
    const timer = setTimeout(() => vm.child.kill('SIGKILL'), BOOT_TIMEOUT_MS);
    const code = await vm.exited;
    clearTimeout(timer);
    bootTimes.push((Date.now() - bootStart) / 1000);
    t.equal(code, 0, `boot ${n}: the guest powered off by itself (console: ${join(dir, `console-${n}.log`)})`);
    if (code !== 0) {
      t.comment(readFileSync(join(dir, `console-${n}.log`), 'utf8').slice(-3000));
      break;
    }
  }

  const results = existsSync(join(share, 'out', 'results.tsv')) ? readFileSync(join(share, 'out', 'results.tsv'), 'utf8').trim().split('\n').map((l) => l.split('\t')) : [];
  const outcome = new Map(results.filter(([kind]) => kind !== 'info').map(([kind, name, detail]) => [name!, { ok: kind === 'ok', detail }]));
  for (const name of expectedChecks()) {
    const r = outcome.get(name);
    t.ok(r?.ok, name, r ? { detail: r.detail } : { detail: 'not reported: the guest script stopped before it' });
  }
  t.ok(existsSync(join(share, 'out', 'done')), 'the guest script ran to the end');
  polling = false;
  await poller;
  const guestSaw = existsSync(join(share, 'out', 'enrolled-workload')) ? readFileSync(join(share, 'out', 'enrolled-workload'), 'utf8').trim() : '';
  t.ok(enrolled, 'enrolling: the kube-apiserver held an ExternalWorkload with Ready=True', { registrarLog: enrolled ? undefined : registrar.log().slice(-2000) });
  t.equal(enrolled?.metadata.name, guestSaw, 'enrolling: it is the workload the harness reported as registered');
  t.same(enrolled?.spec.workloadIPs, [{ ip: GUEST_IP }], 'enrolling: with the address the group allows for the guest');
  if (!existsSync(join(share, 'out', 'done')) && existsSync(join(share, 'out', 'guest.log'))) t.comment(readFileSync(join(share, 'out', 'guest.log'), 'utf8').slice(-3000));

  const measurements: Record<string, string | number> = Object.fromEntries(results.filter(([kind]) => kind === 'info').map(([, name, value]) => [name!, Number(value) || value!]));
  measurements['image build or cache lookup seconds'] = (imageReadyAt - started) / 1000;
  measurements['boot seconds (host wall clock)'] = bootTimes.join(', ');
  measurements['system test seconds'] = (Date.now() - started) / 1000;
  t.comment(`measurements: ${JSON.stringify(measurements)}`);
  mkdirSync(join(root, 'build'), { recursive: true });
  writeFileSync(join(root, 'build', 'system-test-measurements.json'), `${JSON.stringify(measurements, null, 2)}\n`);
});
