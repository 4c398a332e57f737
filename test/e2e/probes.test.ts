/**
 * The daemon with local probes: the probes component runs even while identity waits for
 * an SVID, /status and `mesh-harness status` show each probe, /metrics has its series,
 * and a workload failure shows up without the harness itself turning unready.
 */
import t from 'tap';
import { execa } from 'execa';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { httpGet } from '../helpers/http.ts';
import { DevCa } from '../../src/dev/ca.ts';
import { cleanEnv, repoRoot, runCli, spawnCli } from '../helpers/cli.ts';
import { freePort, tempDir, waitFor, writeJson } from '../helpers/tmp.ts';
import { httpWorkload } from '../helpers/workloads.ts';
import { recordOwner } from '../../src/util/owner.ts';
import { resolveUser } from '../../src/util/users.ts';


interface ProbesDetail {
  workload: { ready: boolean; reason?: string; message: string };
  probes: Array<{ name: string; lastResult: string; consecutiveFailures: number; lastLatencyMs?: number }>;
}

t.test('run with probes.workload: /status, status and /metrics show every probe', async (t) => {
  const dir = tempDir(t, 'mh-probes-e2e-');
  const port = await freePort();
  const web = await httpWorkload(t);
  // run checks the host first: the anchors file and the proxy binary must exist (the proxy never starts: no SVID).
  writeFileSync(`${dir}/anchors.pem`, (await DevCa.create({ trustDomain: 'root.linkerd.cluster.local' })).bundlePem);
  const path = writeJson(dir, 'config.json', {
    workload: { group: 'web', namespace: 'default', ports: [{ port: web.port, name: 'http' }] },
    identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/web', serverName: 'web.vm.cluster.local', workloadApiSocket: `unix://${dir}/agent.sock`, trustAnchorsFile: `${dir}/anchors.pem` },
    // Probes run as probes.execUser (nobody), which must not be the proxy's account.
    proxy: { destinationAddr: 'linkerd-dst-headless.linkerd.svc.cluster.local.:8086', user: 'meshproxy', group: 'meshproxy', binary: '/bin/true' },
    iptables: { enabled: false },
    probes: { workload: [{ name: 'web', httpGet: { port: 'http', path: '/healthz' }, periodSeconds: 1, failureThreshold: 1 }] },
    admin: { port },
    log: { format: 'json' },
  });
  const child = spawnCli(['run', '--config', path]);
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const probesOf = async () => {
    const status = JSON.parse((await httpGet(port, '/status')).body) as { components: Array<{ name: string; phase: string; detail?: ProbesDetail }> };
    return status.components.find((c) => c.name === 'probes');
  };
  const ready = await waitFor('the probes component to see the workload ready', async () => {
    const probes = await probesOf().catch(() => undefined);
    return probes?.detail?.workload.ready ? probes : undefined;
  });
  t.equal(ready.phase, 'Ready');

  web.status = 503;
  const failing = await waitFor('the workload failure', async () => {
    const probes = await probesOf();
    return probes?.detail?.workload.ready === false ? probes : undefined;
  }, 10_000);
  t.equal(failing.phase, 'Degraded');
  t.match(failing.detail!.workload.message, /^GET http:\/\/127\.0\.0\.1:\d+\/healthz: 503 after \d+ ms \(probe web\)$/);
  t.ok(failing.detail!.probes[0]!.consecutiveFailures >= 1);

  const cli = await runCli(['status', '--config', path]);
  t.match(cli.stdout, /^probes\s+Degraded\s+\S+\s+workload not ready: GET/m);
  t.match(cli.stdout, /workload: NOT READY \(ProbeFailed\): GET http/);
  t.match(cli.stdout, /PROBE\s+SOURCE\s+VERDICT\s+LAST\s+OK\/FAIL IN A ROW\s+LATENCY\s+SAW/);
  t.match(cli.stdout, /^web\s+local\s+failing\s+failure\s+0\/\d+\s+\d+ms\s+GET http:\/\/127\.0\.0\.1:\d+\/healthz: 503/m);
  const nobody = await resolveUser('nobody');
  t.match(cli.stdout, new RegExp(`^probe runner: Ready: running \\(pid \\d+\\) as uid ${nobody.uid} gid ${nobody.gid}$`, 'm'), 'the checks come from the probe runner, as nobody');

  const metrics = (await httpGet(port, '/metrics')).body;
  t.match(metrics, /^mesh_harness_probe_consecutive_failures\{probe="web",source="local"\} [1-9]/m);
  t.match(metrics, /^mesh_harness_workload_ready 0$/m);
  t.match(metrics, /^mesh_harness_component_ready\{component="probes"\} 1$/m, 'the harness does not wait for the application');

  child.kill('SIGTERM');
  const result = await child;
  t.equal(result.exitCode, 0, String(result.stderr));
  t.match(result.stderr, /"event":"workload-readiness","ready":false,"reason":"ProbeFailed"/);
});

t.test('from a package under a 0700 directory, the probe runner (nobody) runs from a world-readable copy, removed at stop; a SIGKILLed harness\'s copy is swept by the next', async (t) => {
  const dir = tempDir(t, 'mh-probes-e2e-');
  // A checkout under /root, as far as nobody can tell: dir is 0700 and root's.
  const pkg = join(dir, 'mesh-harness');
  for (const sub of ['dist/chunks', 'proto']) mkdirSync(join(pkg, sub), { recursive: true });
  cpSync(join(repoRoot, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(repoRoot, 'proto'), join(pkg, 'proto'), { recursive: true });
  for (const file of ['mesh-harness.js', 'probe-runner.js']) cpSync(join(repoRoot, 'dist', file), join(pkg, 'dist', file));
  cpSync(join(repoRoot, 'dist', 'chunks'), join(pkg, 'dist', 'chunks'), { recursive: true });
  const port = await freePort();
  const web = await httpWorkload(t);
  writeFileSync(`${dir}/anchors.pem`, (await DevCa.create({ trustDomain: 'root.linkerd.cluster.local' })).bundlePem);
  const path = writeJson(dir, 'config.json', {
    identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/web', serverName: 'web.vm.cluster.local', workloadApiSocket: `unix://${dir}/agent.sock`, trustAnchorsFile: `${dir}/anchors.pem` },
    proxy: { destinationAddr: '127.0.0.1:8086', user: 'meshproxy', group: 'meshproxy', binary: '/bin/true' },
    iptables: { enabled: false },
    probes: { workload: [{ name: 'web', httpGet: { port: web.port, path: '/healthz' }, periodSeconds: 1 }] },
    admin: { port },
    log: { format: 'json' },
  });
  // What a SIGKILLed harness left (its owner is gone), and a copy of a harness still running (this test process).
  const abandoned = mkdtempSync(join(tmpdir(), 'mesh-harness-probe-runner-'));
  writeFileSync(join(abandoned, 'owner.json'), JSON.stringify({ pid: 2 ** 22 + 1, startTime: '1' }));
  const live = mkdtempSync(join(tmpdir(), 'mesh-harness-probe-runner-'));
  recordOwner(live);
  t.teardown(() => rmSync(live, { recursive: true, force: true }));
  const child = execa(process.execPath, [join(pkg, 'dist', 'mesh-harness.js'), 'run', '--config', path], { env: cleanEnv(), extendEnv: false, reject: false });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const probes = await waitFor('the workload ready', async () => {
    const status = JSON.parse((await httpGet(port, '/status')).body) as { components: Array<{ name: string; detail?: { workload: { ready: boolean }; runner: { script?: string } } }> };
    const probes = status.components.find((c) => c.name === 'probes');
    return probes?.detail?.workload.ready ? probes.detail : undefined;
  }, 30_000);
  const script = probes.runner.script!;
  t.match(script, new RegExp(`^${tmpdir()}/mesh-harness-probe-runner-[^/]+/dist/probe-runner\\.js$`), 'run from a copy in the temp directory');
  t.not(script.startsWith(pkg), true);
  t.ok(existsSync(script));
  t.notOk(existsSync(abandoned), 'the abandoned copy was swept');
  t.ok(existsSync(live), 'a live harness\'s copy was left alone');
  child.kill('SIGTERM');
  t.equal((await child).exitCode, 0);
  t.notOk(existsSync(dirname(dirname(script))), 'the copy is gone with the runner');
});
