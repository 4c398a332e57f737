/**
 * The release packages as `npm run package` builds them: the four files, reproducible
 * byte for byte, lintian clean (warnings only where packaging/deb/lintian-overrides says
 * why), each architecture's ELF files only, the RPM's files, scriptlets and requirements,
 * and the unit's exposure score.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../helpers/tmp.ts';
import { SKIP_WITHOUT_PACKAGING } from '../helpers/host.ts';

const exec = promisify(execFile);
const run = async (cmd: string, args: string[], env?: NodeJS.ProcessEnv) => (await exec(cmd, args, { maxBuffer: 64 << 20, env: env ? { ...process.env, ...env } : process.env })).stdout;
const root = join(import.meta.dirname, '..', '..');
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
// xz over two 130 MB runtimes, twice, and lintian: minutes on a busy machine.
t.setTimeout(60 * 60_000);

const ARCH = {
  amd64: { deb: `mesh-harness_${version}_amd64.deb`, rpm: `mesh-harness-${version}-1.x86_64.rpm`, elf: /ELF 64-bit LSB .*x86-64/, koffi: 'linux_x64' },
  arm64: { deb: `mesh-harness_${version}_arm64.deb`, rpm: `mesh-harness-${version}-1.aarch64.rpm`, elf: /ELF 64-bit LSB .*ARM aarch64/, koffi: 'linux_arm64' },
} as const;

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : []));
}

t.test('npm run package output', { skip: SKIP_WITHOUT_PACKAGING }, async (t) => {
  const dir = tempDir(t, 'mh-packaging-pkg-');
  const epoch = (await run('git', ['-C', root, 'log', '-1', '--format=%ct'])).trim();
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  await run('node', [join(root, 'scripts', 'package.mjs'), '--out', a], { SOURCE_DATE_EPOCH: epoch });

  await t.test('the four packages exist', async (t) => {
    for (const arch of Object.values(ARCH)) for (const f of [arch.deb, arch.rpm]) t.ok(statSync(join(a, f)).size > 10_000_000, f);
  });

  await t.test('a second build from the same inputs is byte-identical', async (t) => {
    await run('node', [join(root, 'scripts', 'package.mjs'), '--arch', 'amd64', '--out', b], { SOURCE_DATE_EPOCH: epoch });
    t.equal(sha256(join(b, ARCH.amd64.deb)), sha256(join(a, ARCH.amd64.deb)), ARCH.amd64.deb);
    t.equal(sha256(join(b, ARCH.amd64.rpm)), sha256(join(a, ARCH.amd64.rpm)), ARCH.amd64.rpm);
  });

  for (const [name, arch] of Object.entries(ARCH)) {
    await t.test(`${name}: only ${name} machine code, stripped, one koffi module, no development programs, no playground`, async (t) => {
      for (const [kind, file] of [['deb', arch.deb], ['rpm', arch.rpm]] as const) {
        const x = join(dir, `x-${name}-${kind}`);
        mkdirSync(x);
        if (kind === 'deb') await run('dpkg-deb', ['-x', join(a, file), x]);
        else await run('sh', ['-c', `cd '${x}' && rpm2archive - < '${join(a, file)}' | tar -xzf -`]);
        const files = walk(x);
        const elves = [];
        for (const f of files) {
          const type = await run('file', ['-b', f]);
          if (type.startsWith('ELF')) elves.push({ f, type });
        }
        t.same(elves.map((e) => e.f.slice(x.length)).sort(), [`/usr/lib/mesh-harness/node/bin/node`, `/usr/lib/mesh-harness/node_modules/koffi/build/koffi/${arch.koffi}/koffi.node`], `${kind}: the ELF files are the runtime and one koffi module`);
        for (const e of elves) {
          t.match(e.type, arch.elf, `${kind}: ${e.f.slice(x.length)} is ${name}`);
          t.match(e.type, /, stripped\s*$/, `${kind}: ${e.f.slice(x.length)} has no symbol tables`);
        }
        t.same(files.filter((f) => /dev-(proxy|workload-api|cluster)|mesh-registrar|\/demo-[^/]*\.js$|\.map$/.test(f)), [], `${kind}: no development stand-ins, registrar, playground or source maps`);
        const app = files.filter((f) => f.includes('/usr/lib/mesh-harness/dist/'));
        const appBytes = app.reduce((sum, f) => sum + statSync(f).size, 0);
        t.ok(appBytes < 4_000_000, `${kind}: the program is ${appBytes} bytes: mesh-harness's own code only`);
        t.notOk(app.some((f) => /ExternalWorkloadController|class KubeStore|LeaseKeeper/.test(readFileSync(f, 'utf8'))), `${kind}: none of the registrar's code`);
        for (const conf of ['/usr/lib/sysusers.d/mesh-harness.conf', '/usr/lib/tmpfiles.d/mesh-harness.conf']) t.ok(files.some((f) => f.endsWith(conf)), `${kind}: ${conf}`);
        if (name === 'amd64') {
          // This host runs amd64: the packaged program on the packaged runtime.
          const node = join(x, 'usr/lib/mesh-harness/node/bin/node');
          const help = await run(node, [join(x, 'usr/lib/mesh-harness/dist/mesh-harness.js'), '--help']);
          t.match(help, /^ {2}run /m, `${kind}: --help lists the commands`);
          t.notMatch(help, /\bdemo\b/, `${kind}: --help does not offer the playground it cannot run`);
          const demo = await exec(node, [join(x, 'usr/lib/mesh-harness/dist/mesh-harness.js'), 'demo']).catch((e: { code: number; stderr: string }) => e);
          t.match(demo, { code: 64, stderr: /unknown command "demo"/ }, `${kind}: demo is not a command there`);
        }
        t.ok(files.some((f) => f.endsWith('/etc/mesh-harness/config.json')), `${kind}: the default config`);
        t.ok(files.some((f) => f.endsWith('/usr/lib/mesh-harness/dist/probe-runner.js')), `${kind}: the probe runner (probes.execUser runs it from here)`);
        t.ok(files.some((f) => f.endsWith('/systemd/system/mesh-harness.service')), `${kind}: the unit`);
        t.ok(files.some((f) => f.endsWith('/usr/share/man/man1/mesh-harness.1.gz')), `${kind}: the man page`);
      }
    });
  }

  await t.test('lintian: no errors, no warnings that are not overridden with a reason', async (t) => {
    for (const arch of Object.values(ARCH)) {
      const out = await run('lintian', ['--tag-display-limit', '0', '--fail-on', 'none', join(a, arch.deb)]);
      t.same(out.split('\n').filter((l) => /^[EW]: /.test(l)), [], arch.deb);
    }
  });

  await t.test('deb metadata: dependencies, conffile, maintainer scripts', async (t) => {
    const control = await run('dpkg-deb', ['-f', join(a, ARCH.amd64.deb)]);
    t.match(control, /^Depends: .*\biptables\b/m);
    t.match(control, /^Depends: .*\bpasswd\b/m);
    t.match(control, /^Depends: .*\bsystemd \| systemd-standalone-sysusers \| systemd-sysusers\b/m, 'systemd-sysusers creates the account');
    t.notMatch(control, /\bnodejs\b/, 'never the distribution Node.js');
    const conffiles = await run('sh', ['-c', `dpkg-deb --ctrl-tarfile '${join(a, ARCH.amd64.deb)}' | tar -xOf - ./conffiles`]);
    t.equal(conffiles.trim(), '/etc/mesh-harness/config.json');
  });

  for (const arch of Object.values(ARCH)) {
    await t.test(`rpm: ${arch.rpm} files, config, scriptlets, requirements`, async (t) => {
      const file = join(a, arch.rpm);
      const list = (await run('rpm', ['-qpl', file])).split('\n');
      for (const path of ['/usr/bin/mesh-harness', '/usr/lib/mesh-harness/node/bin/node', '/usr/lib/systemd/system/mesh-harness.service', '/etc/mesh-harness/config.json', '/usr/share/licenses/mesh-harness/COPYRIGHT']) t.ok(list.includes(path), path);
      t.notOk(list.some((p) => p === '/usr' || p === '/etc' || p === '/usr/lib/systemd/system'), 'owns none of the system directories');
      t.same((await run('rpm', ['-qpc', file])).trim().split('\n'), ['/etc/mesh-harness/config.json'], 'the config is a %config file');
      const flags = await run('rpm', ['-qp', '--qf', '[%{FILENAMES} %{FILEFLAGS:fflags}\n]', file]);
      t.match(flags, /^\/etc\/mesh-harness\/config.json cn$/m, 'noreplace');
      const scripts = await run('rpm', ['-qp', '--scripts', file]);
      t.match(scripts, /preinstall scriptlet[^]*systemd-sysusers --replace=\/usr\/lib\/sysusers\.d\/mesh-harness\.conf - <<'SYSUSERS'\n[^]*\nu meshproxy - "mesh-harness proxy" \/nonexistent \/usr\/sbin\/nologin\nSYSUSERS/, '%pre: the account from the sysusers.d file, before the files');
      t.match(scripts, /postinstall scriptlet[^]*systemd-tmpfiles --create \/usr\/lib\/tmpfiles\.d\/mesh-harness\.conf[^]*daemon-reload/, '%post: /run/spire and daemon-reload');
      t.notMatch(scripts, /systemctl[^\n]*\b(enable|start|preset)\b(?![^\n]*--now)/, 'never enables or starts (only disable --now on erase)');
      t.match(scripts, /preuninstall scriptlet[^]*\$1 -eq 0[^]*disable --now mesh-harness[^]*iptables clean/, '%preun: stop and clean on erase only');
      t.match(scripts, /posttrans scriptlet[^]*restart-after-upgrade\.sh systemctl try-restart mesh-harness/, '%posttrans: the new version restarts a running service after an upgrade');
      t.notMatch(scripts.slice(scripts.indexOf('postuninstall scriptlet'), scripts.indexOf('posttrans scriptlet')), /try-restart|rm -rf[^\n]*\/var\/lib\/mesh-harness/, '%postun: neither restarts nor removes the state');
      const requires = (await run('rpm', ['-qp', '--requires', file])).split('\n');
      t.ok(requires.includes('iptables'), 'requires iptables');
      t.ok(requires.includes('systemd'), 'requires systemd (systemd-sysusers for the account)');
      t.notOk(requires.some((r) => /^nodejs/.test(r)), 'never the distribution Node.js');
      t.equal(await run('rpm', ['-qp', '--qf', '%{ARCH}', file]), arch.rpm.split('.').at(-2));
    });
  }

  await t.test('systemd-analyze security --offline rates the unit 2.5 or better', async (t) => {
    const out = await run('sh', ['-c', `systemd-analyze security --offline=true '${join(root, 'systemd', 'mesh-harness.service')}' 2>&1 || true`]);
    const score = Number(/Overall exposure level for mesh-harness\.service: ([0-9.]+)/.exec(out)?.[1]);
    t.ok(score <= 2.5, `exposure ${score}`);
    const unit = readFileSync(join(root, 'systemd', 'mesh-harness.service'), 'utf8');
    t.match(unit, /^After=spire-agent\.service$/m, 'ordered after a local spire-agent');
    t.notMatch(unit, /^(Requires|BindsTo|Requisite)=.*spire-agent/m, 'but not bound to one');
  });
});
