import t from 'tap';
import { httpGet } from '../helpers/http.ts';
import { cleanEnv, runCli, spawnCli } from '../helpers/cli.ts';
import { chmodSync, chownSync, writeFileSync } from 'node:fs';
import { DevCa } from '../../src/dev/ca.ts';
import { freePort, tempDir, waitFor, writeJson } from '../helpers/tmp.ts';


/**
 * A config `run` accepts, with nothing that touches the host (no iptables, a socket nobody
 * serves). Its host checks pass: real trust anchors and an executable that never runs,
 * because the proxy starts only once an SVID is there.
 */
async function daemonConfig(dir: string, adminPort: number): Promise<Record<string, unknown>> {
  const ca = await DevCa.create({ trustDomain: 'root.linkerd.cluster.local' });
  writeFileSync(`${dir}/anchors.pem`, ca.bundlePem);
  return {
    workload: { group: 'web', namespace: 'default', ports: [8080] },
    identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/web', serverName: 'web.vm.cluster.local', workloadApiSocket: `unix://${dir}/agent.sock`, trustAnchorsFile: `${dir}/anchors.pem` },
    proxy: { destinationAddr: 'linkerd-dst-headless.linkerd.svc.cluster.local.:8086', user: 'nobody', group: 'nogroup', binary: '/bin/true' },
    iptables: { enabled: false },
    admin: { port: adminPort },
    log: { format: 'json' },
  };
}

t.test('version prints the package version', async (t) => {
  const res = await runCli(['version']);
  t.equal(res.exitCode, 0);
  t.match(res.stdout, /^mesh-harness \d+\.\d+\.\d+/);
});

t.test('usage errors exit 64 with a hint', async (t) => {
  const unknown = await runCli(['frobnicate']);
  t.equal(unknown.exitCode, 64);
  t.match(unknown.stderr, /unknown command "frobnicate"/);
  const badFlag = await runCli(['config', 'show', '--bogus']);
  t.equal(badFlag.exitCode, 64);
  t.match(badFlag.stderr, /usage: mesh-harness config/);
});

t.test('config validate: three mistakes give three lines and exit 78, no stack trace', async (t) => {
  const dir = tempDir(t);
  const required = { identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/web', serverName: 'web.vm.cluster.local' }, proxy: { destinationAddr: 'dst.example:8086' } };
  const path = writeJson(dir, 'config.json', { ...required, workload: { colour: 'blue' }, log: { level: 7 }, admin: { port: 99999 } });
  const res = await runCli(['config', 'validate', path]);
  t.equal(res.exitCode, 78);
  const lines = res.stderr.split('\n').filter((l) => l.startsWith('  '));
  t.equal(lines.length, 3, res.stderr);
  t.match(res.stderr, /workload\.colour: got "blue"; unknown key/);
  t.match(res.stderr, /log\.level: got 7; must be one of/);
  t.match(res.stderr, /admin\.port: got 99999; must be a port number/);
  t.notMatch(res.stderr, /\n\s+at /, 'no stack trace');
});

t.test('config validate checks what run checks: a file it accepts, run accepts', async (t) => {
  const dir = tempDir(t);
  const empty = writeJson(dir, 'empty.json', {});
  const emptyValidate = await runCli(['config', 'validate', empty]);
  t.equal(emptyValidate.exitCode, 78, '{} is not a configuration run accepts');
  for (const field of ['identity.spiffeId', 'identity.serverName', 'proxy.destinationAddr']) {
    t.match(emptyValidate.stderr, new RegExp(`${field.replace('.', '\\.')}: not set; required by mesh-harness run`));
  }
  const emptyFileOnly = await runCli(['config', 'validate', '--file-only', empty]);
  t.equal(emptyFileOnly.exitCode, 78, 'the required settings are part of the file');

  // Complete, but the host lacks what it names: the same problems from both commands.
  const complete = await daemonConfig(dir, await freePort());
  const onHost = writeJson(dir, 'host.json', { ...complete, identity: { ...(complete.identity as object), trustAnchorsFile: `${dir}/missing.pem` }, proxy: { ...(complete.proxy as object), user: 'mh-cli-no-such-user' } });
  const validate = await runCli(['config', 'validate', onHost]);
  const run = await runCli(['run', '--config', onHost]);
  t.equal(validate.exitCode, 78);
  t.equal(run.exitCode, 78);
  const problems = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('  ')).sort();
  t.equal(problems(validate.stderr).length, 2, validate.stderr);
  t.same(problems(validate.stderr), problems(run.stderr), 'validate reports exactly the problems run refuses to start with');
  const fileOnly = await runCli(['config', 'validate', '--file-only', onHost]);
  t.equal(fileOnly.exitCode, 0, 'before install or on another machine: the file alone is fine');
  t.match(fileOnly.stdout, /valid \(schema and the settings mesh-harness run requires\)\nnot checked/);
});

t.test('config validate accepts a good file; config show names each source', async (t) => {
  const dir = tempDir(t);
  const path = writeJson(dir, 'config.json', { ...(await daemonConfig(dir, await freePort())), proxy: { ...(await daemonConfig(dir, 1)).proxy as object, inboundPort: 5143 } });
  const ok = await runCli(['config', 'validate', path]);
  t.equal(ok.exitCode, 0, ok.stderr);
  t.match(ok.stdout, /valid; mesh-harness run checks nothing more before it starts/);
  const show = await runCli(['config', 'show', '--config', path, '--set', 'log.level=debug'], { env: cleanEnv({ MESH_HARNESS_PROXY_OUTBOUND_PORT: '5140' }) });
  t.equal(show.exitCode, 0, show.stderr);
  t.match(show.stdout, /proxy\.inboundPort\s+5143\s+\(file /);
  t.match(show.stdout, /proxy\.outboundPort\s+5140\s+\(env MESH_HARNESS_PROXY_OUTBOUND_PORT\)/);
  t.match(show.stdout, /log\.level\s+"debug"\s+\(flag --set\)/);
  t.match(show.stdout, /proxy\.adminPort\s+4191\s+\(default\)/);
  t.match(show.stdout, /proxy\.shutdownGrace\s+30s\s+\(default\)/);
  const json = await runCli(['config', 'show', '--config', path, '--json']);
  t.same(JSON.parse(json.stdout)['proxy.inboundPort'], { value: 5143, source: `file ${path}` });
});

t.test('run without the fields it needs exits 78 naming them', async (t) => {
  const dir = tempDir(t);
  const path = writeJson(dir, 'config.json', {});
  const res = await runCli(['run', '--config', path]);
  t.equal(res.exitCode, 78);
  t.match(res.stderr, /identity\.spiffeId: not set; required by mesh-harness run/);
});

t.test('status with no daemon says so and exits 69', async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const res = await runCli(['status', '--config', writeJson(dir, 'c.json', { admin: { port } })]);
  t.equal(res.exitCode, 69);
  t.match(res.stderr, new RegExp(`no mesh-harness daemon answers on 127\\.0\\.0\\.1:${port}`));
  const waited = await runCli(['status', '--wait', '--timeout', '2s', '--config', writeJson(dir, 'c.json', { admin: { port } })]);
  t.equal(waited.exitCode, 69, 'still nothing after --wait');
  t.match(waited.stderr, new RegExp(`no mesh-harness daemon answers on 127\\.0\\.0\\.1:${port} within 2s`));
  t.equal((await runCli(['status', '--timeout', '2s'])).exitCode, 64, '--timeout without --wait');
});

t.test('run serves /live, /ready 503 with reasons, /metrics; status reads it; SIGTERM exits 0', async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const path = writeJson(dir, 'config.json', await daemonConfig(dir, port));
  const child = spawnCli(['run', '--config', path]);
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const live = await waitFor('/live', () => httpGet(port, '/live').catch(() => undefined));
  t.equal(live.status, 200);
  const ready = await httpGet(port, '/ready');
  t.equal(ready.status, 503);
  const body = JSON.parse(ready.body);
  t.equal(body.ready, false);
  t.ok(body.notReady.length > 0 || body.status.length > 0, 'the body says what is not ready');
  const metrics = await httpGet(port, '/metrics');
  t.equal(metrics.status, 200);
  t.match(metrics.body, /^mesh_harness_process_resident_memory_bytes/m);
  const status = await runCli(['status', '--config', path]);
  t.equal(status.exitCode, 1, 'not ready yet');
  t.match(status.stdout, /NOT READY/);
  t.match(status.stdout, /COMPONENT\s+PHASE\s+SINCE\s+MESSAGE/);
  const statusJson = await runCli(['status', '--json', '--config', path]);
  t.equal(JSON.parse(statusJson.stdout).ready, false);
  const waited = await runCli(['status', '--wait', '--timeout', '3s', '--config', path]);
  t.equal(waited.exitCode, 1, '--wait gives up when it is still not ready');
  t.match(waited.stdout, /NOT READY/);
  t.match(waited.stderr, /not ready after 3s; the components above say what they wait for/);
  child.kill('SIGTERM');
  const result = await child;
  t.equal(result.exitCode, 0, String(result.stderr));
  t.match(result.stderr, /"msg":"shutting down"/);
  t.match(result.stderr, /"component":"harness"/);
});

t.test('a config file others could change: run refuses it (78, one line), config validate warns, check fails, a reload keeps the previous one', async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const path = writeJson(dir, 'config.json', await daemonConfig(dir, port));
  chmodSync(path, 0o664);
  const refused = await runCli(['run', '--config', path]);
  t.equal(refused.exitCode, 78);
  t.equal(refused.stderr.trim(), `mesh-harness run: config file ${path} is writable by group or others (owner 0:0, mode 0664); it decides what runs as root (proxy.binary, probes.allowClusterExec, probes.allowClusterHosts), so only root may change it; fix: chown root:root ${path} && chmod go-w ${path}`);
  chmodSync(path, 0o644);
  chownSync(path, 65534, 65534);
  const notRoot = await runCli(['run', '--config', path]);
  t.equal(notRoot.exitCode, 78);
  t.match(notRoot.stderr, /^mesh-harness run: config file \S+ is not owned by root \(owner 65534:65534, mode 0644\);/);

  const validate = await runCli(['config', 'validate', path]);
  t.equal(validate.exitCode, 0, 'validate checks a file before it is installed: it warns');
  t.match(validate.stderr, /^mesh-harness: warning: config file \S+ is not owned by root .*\(mesh-harness run refuses such a file\)$/m);
  const check = await runCli(['check', '--config', path, '--output', 'json'], { timeoutMs: 60_000 });
  const report = JSON.parse(check.stdout) as { categories: Array<{ checks: Array<{ id: string; result: string; message: string }> }> };
  const trusted = report.categories.flatMap((c) => c.checks).find((c) => c.id === 'config.trusted');
  t.equal(trusted?.result, 'error');
  t.match(trusted?.message, /is not owned by root/);
  t.equal(check.exitCode, 1);

  chownSync(path, 0, 0);
  const child = spawnCli(['run', '--config', path]);
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await waitFor('/live', () => httpGet(port, '/live').catch(() => undefined));
  chmodSync(dir, 0o777);
  writeJson(dir, 'config.json', { ...(await daemonConfig(dir, port)), log: { format: 'json', level: 'debug' } });
  child.kill('SIGHUP');
  const status = async () => JSON.parse((await httpGet(port, '/status')).body) as { components: Array<{ name: string; message: string; lastError?: string }> };
  const config = await waitFor('the refused reload in status', async () => (await status()).components.find((c) => c.name === 'config' && c.lastError), 30_000, 200);
  t.match(config.lastError, new RegExp(`^config file ${path} is in directory ${dir}, which group or others can write \\(owner 0:0, mode 0777\\)`));
  t.match(config.message, /reload rejected: running the previous configuration/);
  chmodSync(dir, 0o700);
  child.kill('SIGTERM');
  t.equal((await child).exitCode, 0);
});
