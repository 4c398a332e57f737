/**
 * Acceptance on a real kube-apiserver: the probes component and the real registration
 * component (mutual TLS with a dev-CA SVID) against a real mesh-registrar process
 * (dist/), probing real listeners on loopback; the ExternalWorkload's Ready condition is
 * read back from the API server. The proxy is the one stand-in (always ready).
 */
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { workloadName } from '../../../src/protocol/workload-name.ts';
import type { ExternalWorkload } from '../../../src/registrar/store.ts';
import { KubeCluster, SKIP_WITHOUT_KUBE } from '../../helpers/kube.ts';
import { groupManifest, groupServerName, makePki, REGISTRAR_ID, ReplicaProcess, TRUST_DOMAIN, type GroupSpec } from '../../helpers/registrar.ts';
import { startProbedHarness } from '../../helpers/probed-harness.ts';
import { tempDir, waitFor } from '../../helpers/tmp.ts';
import { grpcHealthServer, httpWorkload, TcpWorkload } from '../../helpers/workloads.ts';
import { probesConfig } from './helpers.ts';
import { SKIP_WITHOUT_SETUP } from '../../helpers/host.ts';

const VM_ID = `spiffe://${TRUST_DOMAIN}/vm/web`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('probe results reach the ExternalWorkload Ready condition in a real kube-apiserver', { skip: SKIP_WITHOUT_SETUP || SKIP_WITHOUT_KUBE, timeout: 300_000 }, async (t) => {
  const cluster = await KubeCluster.start(t);
  const pki = await makePki(t);
  const ns = 'mh-probes';
  await cluster.kubectl(['create', 'namespace', ns]);
  const applyGroup = (group: Omit<GroupSpec, 'name' | 'namespace' | 'allowedIdentities'>) =>
    cluster.kubectl(['apply', '-f', '-'], { input: groupManifest({ name: 'web', namespace: ns, allowedIdentities: [VM_ID], ...group }) });
  const name = workloadName({ namespace: ns, group: 'web', nodeName: 'vm-1', spiffeId: VM_ID });
  const condition = async () => {
    const { status, body } = await cluster.request('GET', `/apis/workload.linkerd.io/v1beta1/namespaces/${ns}/externalworkloads/${name}`);
    if (status !== 200) return undefined;
    return (body as ExternalWorkload).status?.conditions?.find((c) => c.type === 'Ready');
  };
  const waitForReady = (status: 'True' | 'False', timeoutMs: number, message?: RegExp) =>
    waitFor(`${name} Ready=${status}`, async () => {
      const c = await condition();
      return c?.status === status && (!message || message.test(c.message ?? '')) ? c : undefined;
    }, timeoutMs, 50);

  const web = await httpWorkload(t);
  const db = await TcpWorkload.start(t);
  const grpc = await grpcHealthServer(t);
  const dir = tempDir(t, 'mh-probes-');
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'out'), { mode: 0o777 });
  chmodSync(join(dir, 'out'), 0o777);
  const marker = join(dir, 'out', 'marker');
  const healthy = join(dir, 'healthy');
  writeFileSync(healthy, '');
  const httpProbe = { name: 'web', httpGet: { port: web.port, path: '/healthz' }, periodSeconds: 1, failureThreshold: 2, successThreshold: 2 };
  const tcpProbe = { name: 'db', tcpSocket: { port: db.port }, periodSeconds: 1, failureThreshold: 2 };
  const grpcProbe = { name: 'api', grpc: { port: grpc.port }, periodSeconds: 1, failureThreshold: 2 };
  // The group starts with an exec probe this VM does not allow.
  await applyGroup({ probes: [httpProbe, { name: 'touch', exec: { command: ['touch', marker] }, periodSeconds: 1 }] });

  const replica = await ReplicaProcess.start(t, { replica: 'reg-probes', pki, kubeconfig: cluster.registrarKubeconfig });
  const config = probesConfig(t, {
    workload: { group: 'web', namespace: ns, nodeName: 'vm-1', ips: ['192.0.2.10'] },
    identity: { spiffeId: VM_ID, serverName: groupServerName('web', ns), trustAnchorsFile: pki.anchorsFile },
    control: { registrarAddress: replica.grpcAddress, registrarIdentity: REGISTRAR_ID, heartbeatInterval: '1s' },
    // A local exec probe: the VM's own config may run commands (as nobody).
    probes: { workload: [{ name: 'healthy-file', exec: { command: ['test', '-e', healthy] }, periodSeconds: 1, failureThreshold: 2 }] },
  });
  // Each failure below is a deliberate flap: short holds keep the test quick while the
  // recoveries still go through the damping (the defaults would hold for 10 s, 20 s, ...).
  const { probes } = await startProbedHarness(t, { pki, config, damping: { holdBaseMs: 1000, holdMaxMs: 3000, quietMs: 600_000 } });

  const refused = await waitForReady('False', 30_000, /refused/);
  t.equal(refused.reason, 'ProbeFailed');
  t.match(refused.message, /exec probe touch of ExternalGroup mh-probes\/web refused: this VM does not run exec probes from the cluster \(set probes\.allowClusterExec/);
  await sleep(2500);
  t.notOk(existsSync(marker), 'the exec probe from the group never ran');
  t.same(probes.refusals().map((r) => r.reason), ['ExecNotAllowed'], 'and the harness status shows the refusal');

  // The group drops the exec probe and adds tcpSocket and grpc probes: the change arrives live.
  await applyGroup({ probes: [httpProbe, tcpProbe, grpcProbe] });
  await waitForReady('True', 30_000);
  t.same(probes.probeStatuses().map((s) => s.name).sort(), ['api', 'db', 'healthy-file', 'web']);

  // Each failure: Ready=False within periodSeconds x failureThreshold (+1 s), naming the probe and what it saw.
  const bound = 1 * 2 * 1000 + 1000;
  const cases: Array<[string, () => Promise<void> | void, () => Promise<void> | void, RegExp]> = [
    ['http 503', () => void (web.status = 503), () => void (web.status = 200), /^GET http:\/\/127\.0\.0\.1:\d+\/healthz: 503 after \d+ ms \(probe web\)$/],
    ['tcp listener closed', () => db.close(), () => db.reopen(t), /^TCP 127\.0\.0\.1:\d+: connection refused after \d+ ms \(probe db\)$/],
    ['local exec exits 1', () => rmSync(healthy), () => writeFileSync(healthy, ''), /^exec \["test","-e",".*healthy"\]: exit 1 after \d+ ms \(probe healthy-file\)$/],
    ['grpc NOT_SERVING', () => void grpc.statuses.set('', 'NOT_SERVING'), () => void grpc.statuses.set('', 'SERVING'), /^gRPC health 127\.0\.0\.1:\d+: NOT_SERVING after \d+ ms \(probe api\)$/],
  ];
  for (const [what, fail, heal, message] of cases) {
    const injected = performance.now();
    await fail();
    const down = await waitForReady('False', bound);
    t.pass(`${what}: Ready=False on the API server after ${Math.round(performance.now() - injected)} ms`);
    t.equal(down.reason, 'ProbeFailed', what);
    t.match(down.message, message, what);
    await heal();
    await waitForReady('True', 15_000);
  }
  t.match(await replica.metrics(), /\S/, 'the registrar stayed up throughout');
});
