/**
 * `mesh-harness check`: the report (JSON shape, table, exit codes) on a healthy machine and
 * with an invalid configuration. The built CLI runs inside a network namespace the test
 * creates (test/helpers/check-world.ts); the other check-*.test.ts files break one thing
 * each and expect that check's own message and hint.
 */
import t from 'tap';
import { runCli } from '../helpers/cli.ts';
import { DESTINATION, failures, healthyWorld, runCheck } from '../helpers/check-world.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

t.test('a healthy machine passes every check; the JSON report has the documented shape', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'ok');
  const run = await runCheck(world);
  t.same(failures(run), [], run.stdout);
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(run.report.success, true);
  t.same(run.report.categories.map((c) => c.categoryName), ['config', 'host', 'binaries', 'identity', 'network', 'control plane', 'daemon']);
  for (const entry of run.report.categories.flatMap((c) => c.checks)) {
    t.match(entry, { id: /^[a-z-]+\.[a-z-]+$/, description: String, result: /^(success|warning|error|skipped)$/, message: String, durationMs: Number }, entry.id);
  }
  const summary = run.report.summary;
  t.equal(summary.ok + summary.warn + summary.fail + summary.skip, run.report.categories.flatMap((c) => c.checks).length);
  t.match(run.find('identity.svid').message, /^serial [0-9A-F]+ from /);
  t.equal(run.find('identity.chain').result, 'success');
  t.match(run.find('identity.expiry').message, /^expires in \d+m/);
  t.equal(run.find('network.dns', DESTINATION).message, '127.0.0.1');
  t.match(run.find('network.tcp', `${DESTINATION}:8086`).message, 'connected to 127.0.0.1:8086');
  t.match(run.find('network.route', DESTINATION).message, /^127\.0\.0\.1 via on-link dev lo/);
  t.equal(run.find('network.port', '4143').message, 'free');
  t.match(run.find('binaries.proxy').message, /linkerd2-proxy \(runs; linkerd2-proxy reports no version\)$/);
  t.match(run.find('control.registrar'), { result: 'skipped', message: /^registration not configured \(control\.registrarAddress is empty\)/ });
  t.match(run.find('daemon.status'), { result: 'skipped', message: /no harness answers on 127\.0\.0\.1:4192/ });
});

t.test('the table output: one line per check under area headings, hint and runbook under a failure', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'table');
  const run = await runCheck(world, { identity: { workloadApiSocket: `unix://${world.dir}/absent.sock` } }, { output: 'table' });
  t.equal(run.exitCode, 1);
  t.match(run.stdout, /^config\n------\n\[ok\] {3}the configuration is valid: /);
  t.match(run.stdout, /\nidentity\n--------\n/);
  t.match(run.stdout, /\[FAIL\] the Workload API \(identity\.workloadApiSocket\) serves an SVID for spiffe:\/\/root\.linkerd\.cluster\.local\/vm\/web\n {9}Workload API socket .*absent\.sock does not exist; is spire-agent running\?.*\n {9}hint: start spire-agent.*\n {9}see docs\/operations\.md#check-identity-svid\n/);
  t.match(run.stdout, /\[skip\] the SVID chain verifies against the trust anchors \(skipped: no SVID for /);
  t.match(run.stdout, /\nStatus check results are \[FAIL\] \(\d+ passed, 1 failed, 0 warnings, \d+ skipped; [\d.]+ s\)$/);
});

t.test('an unknown --output or a too short --timeout is a usage error (64) that runs no check', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const res = await runCli(['check', '--output', 'yaml']);
  t.equal(res.exitCode, 64);
  t.match(res.stderr, 'mesh-harness check: --output must be table or json, got "yaml"\nusage: mesh-harness check');
  t.equal(res.stdout, '');
  const tooShort = await runCli(['check', '--timeout', '10ms']);
  t.equal(tooShort.exitCode, 64);
  t.match(tooShort.stderr, 'mesh-harness check: --timeout must be a duration of at least 1s, such as 5s or 30s; got "10ms"');
});

t.test('an invalid configuration lists every problem and skips what needs it', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'badcfg');
  const run = await runCheck(world, { log: { level: 'loud' }, admin: { port: 99999 } });
  t.equal(run.exitCode, 1);
  const valid = run.find('config.valid');
  t.equal(valid.result, 'error');
  t.match(valid.message, /^2 problems:\n- /);
  t.match(valid.message, '- log.level: got "loud"; must be one of');
  t.match(valid.message, '- admin.port: got 99999; must be a port number');
  t.equal(run.find('host.privileges').result, 'success', 'needs no configuration');
  t.equal(run.find('identity.skipped').result, 'skipped');
  t.same(failures(run), ['config.valid']);
});

