/**
 * `mesh-harness check` shows a real refusal: a real kube-apiserver and etcd, a real
 * mesh-registrar under deploy/kubernetes RBAC, an ExternalGroup that does not allow the
 * harness's SPIFFE ID, and a running harness daemon (dist/, the development Workload API
 * issuing SVIDs from the registrar's CA, the development proxy as its child, iptables off:
 * it runs in the host's network namespace and never touches the host's rules).
 *
 * check reads the registrar's answer from the daemon's /status (the protocol has no dry
 * run), so each refusal is provoked for real and check must turn its reason code into the
 * right hint: NotAllowed is fixed in the group, NameMismatch (a machine asking for another
 * machine's name) on the machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { execa } from 'execa';
import type { AdminStatus } from '../../src/admin/server.ts';
import type { CheckReport } from '../../src/check/render.ts';
import { writeDevProxyLauncher } from '../../src/dev/proxy/launcher.ts';
import { workloadName } from '../../src/protocol/workload-name.ts';
import { cleanEnv, harnessBin } from '../helpers/cli.ts';
import { KubeCluster, SKIP_WITHOUT_KUBE } from '../helpers/kube.ts';
import { groupManifest, makePki, REGISTRAR_ID, ReplicaProcess, startDevWorkloadApi, TRUST_DOMAIN, type Pki } from '../helpers/registrar.ts';
import { freePort, tempDir, waitFor } from '../helpers/tmp.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

// A cluster, a registrar, two harnesses, and the registrar's 60 s retry-after on NotAllowed.
t.setTimeout(900_000);

const SPIFFE_ID = `spiffe://${TRUST_DOMAIN}/vm/web`;
const OTHER_ID = `spiffe://${TRUST_DOMAIN}/vm/billing`;
const NAMESPACE = 'mh-e2e-checkreg';

type Component = AdminStatus['components'][number];
type CheckEntry = CheckReport['categories'][number]['checks'][number];

interface Daemon {
  configPath: string;
  adminPort: number;
  child: ChildProcess;
  logFile: string;
  registration(): Promise<Component | undefined>;
}

/** A harness daemon in the host's network namespace, on ports of its own. */
async function startDaemon(t: { teardown(fn: () => unknown): void }, dir: string, options: { nodeName: string; socket: string; pki: Pki; registrarAddress: string; workload?: Record<string, unknown> }): Promise<Daemon> {
  const home = join(dir, options.nodeName);
  mkdirSync(home, { mode: 0o755 });
  chmodSync(home, 0o755);
  const [adminPort, inboundPort, outboundPort, proxyAdminPort, controlPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const config = {
    workload: { group: 'web', namespace: NAMESPACE, nodeName: options.nodeName, ips: ['192.0.2.60'], ports: [8080], ...options.workload },
    identity: { spiffeId: SPIFFE_ID, serverName: 'web.vm.example', workloadApiSocket: `unix://${options.socket}`, trustAnchorsFile: options.pki.anchorsFile },
    proxy: { binary: writeDevProxyLauncher(home), user: 'nobody', group: 'nogroup', destinationAddr: '127.0.0.1:8086', inboundPort, outboundPort, adminPort: proxyAdminPort, controlPort, shutdownGrace: '1s' },
    iptables: { enabled: false },
    control: { registrarAddress: options.registrarAddress, registrarIdentity: REGISTRAR_ID },
    admin: { port: adminPort },
    log: { format: 'json', level: 'info' },
  };
  const configPath = join(home, 'config.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const logFile = join(home, 'harness.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [harnessBin, 'run', '--config', configPath], { stdio: ['ignore', fd, fd], env: cleanEnv() });
  closeSync(fd);
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  });
  return {
    configPath,
    adminPort,
    child,
    logFile,
    async registration() {
      const status = (await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json()) as AdminStatus;
      return status.components.find((c) => c.name === 'registration');
    },
  };
}

/** Waits until the daemon's registration component satisfies `test`; the harness log on timeout. */
function registrationWhere(daemon: Daemon, what: string, test: (c: Component) => boolean, timeoutMs: number): Promise<Component> {
  return waitFor(what, async () => {
    if (daemon.child.exitCode !== null) throw new Error(`the harness exited ${daemon.child.exitCode}`);
    const registration = await daemon.registration();
    return registration && test(registration) ? registration : undefined;
  }, timeoutMs, 250).catch((err: Error) => {
    throw new Error(`${err.message}\nharness log:\n${readFileSync(daemon.logFile, 'utf8').slice(-4000)}`);
  });
}

/** `mesh-harness check --config <the daemon's config> --output json`, as an operator runs it on the machine. */
async function check(daemon: Daemon): Promise<{ exitCode: number | undefined; stdout: string; report: CheckReport; registrar: CheckEntry }> {
  const result = await execa(process.execPath, [harnessBin, 'check', '--config', daemon.configPath, '--output', 'json', '--timeout', '30s'], { env: cleanEnv(), extendEnv: false, reject: false, timeout: 90_000 });
  const stdout = String(result.stdout);
  const report = JSON.parse(stdout) as CheckReport;
  const registrar = report.categories.flatMap((c) => c.checks).find((c) => c.id === 'control.registrar');
  if (!registrar) throw new Error(`no control.registrar in ${stdout}`);
  return { exitCode: result.exitCode, stdout, report, registrar };
}

t.test('check: the registrar refusing, for real, with its reason and a hint per reason', { skip: SKIP_WITHOUT_SETUP || SKIP_WITHOUT_KUBE, timeout: 600_000 }, async (t) => {
  const cluster = await KubeCluster.start(t);
  const pki = await makePki(t);
  const dir = tempDir(t, 'mh-e2e-checkreg-');
  chmodSync(dir, 0o755);
  await cluster.kubectl(['create', 'namespace', NAMESPACE]);
  // The group exists, but allows another machine's identity, not this one's.
  await cluster.kubectl(['apply', '-f', '-'], { input: groupManifest({ name: 'web', namespace: NAMESPACE, allowedIdentities: [OTHER_ID], serverName: 'web.vm.example' }) });
  const registrar = await ReplicaProcess.start(t, { replica: 'reg-checkreg', pki, kubeconfig: cluster.registrarKubeconfig, grace: '1m', ttl: '5m' });

  const socket = await startDevWorkloadApi(t, dir, pki, SPIFFE_ID);

  const a = await startDaemon(t, dir, { nodeName: 'vm-a', socket, pki, registrarAddress: registrar.grpcAddress });
  const nameA = workloadName({ namespace: NAMESPACE, group: 'web', nodeName: 'vm-a', spiffeId: SPIFFE_ID });

  // 1. NotAllowed: the group does not list this SPIFFE ID.
  const refused = await registrationWhere(a, 'the registrar to refuse vm-a (NotAllowed)', (c) => (c.detail?.['refusal'] as { reason?: string } | undefined)?.reason === 'NotAllowed', 120_000);
  t.equal(refused.phase, 'Degraded');
  t.match(refused.detail?.['refusal'], { reason: 'NotAllowed', message: `${SPIFFE_ID} is not in ExternalGroup ${NAMESPACE}/web spec.allowedIdentities`, workloadName: nameA }, '/status carries the reason code');

  const notAllowed = await check(a);
  t.equal(notAllowed.exitCode, 1, 'check exits 1 when a check fails');
  t.equal(notAllowed.report.success, false);
  t.equal(notAllowed.registrar.result, 'error', 'control.registrar fails', { stdout: notAllowed.stdout });
  t.match(notAllowed.registrar.message, `the registrar refused this machine (NotAllowed): ${SPIFFE_ID} is not in ExternalGroup ${NAMESPACE}/web spec.allowedIdentities`, "the registrar's reason, in its words");
  t.equal(notAllowed.registrar.hint, `add ${SPIFFE_ID} (or a pattern covering it, such as spiffe://${TRUST_DOMAIN}/vm/*) to spec.allowedIdentities of ExternalGroup ${NAMESPACE}/web (kubectl -n ${NAMESPACE} edit externalgroup web), or set workload.group / workload.namespace to a group that allows it`);
  t.equal(notAllowed.registrar.runbook, 'docs/operations.md#check-control-registrar');

  // 2. The operator follows the hint; the harness asks again by itself (after the registrar's retry-after) and is accepted.
  await cluster.kubectl(['apply', '-f', '-'], { input: groupManifest({ name: 'web', namespace: NAMESPACE, allowedIdentities: [OTHER_ID, SPIFFE_ID], serverName: 'web.vm.example', maxWorkloadsPerIdentity: 2 }) });
  const accepted = await registrationWhere(a, 'vm-a registered after the group allowed it', (c) => c.phase === 'Ready', 180_000);
  t.equal(accepted.detail?.['workloadName'], nameA);
  t.notOk(accepted.detail?.['refusal'], 'no refusal left in /status once accepted');
  const allowed = await check(a);
  t.equal(allowed.registrar.result, 'success', 'control.registrar passes once accepted', { stdout: allowed.stdout });
  t.match(allowed.registrar.message, new RegExp(`^Ready: registered as ${nameA} with replica reg-checkreg$`));

  // 3. NameMismatch: a second machine (another node name) configured with the first one's workload.name. The
  // registrar names machines itself: the second one cannot take the first one's name, whatever it asks for.
  const b = await startDaemon(t, dir, { nodeName: 'vm-b', socket, pki, registrarAddress: registrar.grpcAddress, workload: { name: nameA } });
  const nameB = workloadName({ namespace: NAMESPACE, group: 'web', nodeName: 'vm-b', spiffeId: SPIFFE_ID });
  await registrationWhere(b, 'the registrar to refuse vm-b (NameMismatch)', (c) => (c.detail?.['refusal'] as { reason?: string } | undefined)?.reason === 'NameMismatch', 120_000);
  const mismatch = await check(b);
  t.equal(mismatch.exitCode, 1);
  t.equal(mismatch.registrar.result, 'error', 'control.registrar fails', { stdout: mismatch.stdout });
  t.equal(mismatch.registrar.message, `the registrar refused this machine (NameMismatch): this machine's proxy was given the ExternalWorkload name ${nameA} (workload.name), but ExternalGroup ${NAMESPACE}/web does not allow custom names; the registrar's name for it is ${nameB}: empty workload.name on the machine (the harness then derives ${nameB}), or set spec.allowCustomNames: true on the group; the harness asks again 30 s after this refusal, by itself`, 'the registrar says which name it gives and what to change');
  t.match(mismatch.registrar.hint, new RegExp(`^this machine gave its proxy the name ${nameA} \\(workload\\.name\\), which is not the registrar's name for it: empty workload\\.name`));

  const first = await check(a);
  t.equal(first.registrar.result, 'success', 'the first machine keeps its registration');
});
