/**
 * The whole registration path: the harness daemon (dist/, with real SPIRE — spire-server
 * and spire-agent, SVIDs rotating about every 30 s — and the development proxy as its
 * child) → mesh-registrar (a real process) → a real kube-apiserver. iptables is off: the
 * harness runs in the host's own network namespace here, and the harness never touches the
 * host's rules. test/e2e/demo.test.ts runs the same path in network namespaces with
 * iptables on.
 */
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { writeDevProxyLauncher } from '../../src/dev/proxy/launcher.ts';
import { workloadName } from '../../src/protocol/workload-name.ts';
import type { ExternalWorkload } from '../../src/registrar/store.ts';
import { harnessBin } from '../helpers/cli.ts';
import { KubeCluster, SKIP_WITHOUT_KUBE } from '../helpers/kube.ts';
import { groupManifest, makePki, REGISTRAR_ID, ReplicaProcess, TRUST_DOMAIN } from '../helpers/registrar.ts';
import { SKIP_WITHOUT_SPIRE, SpireServer } from '../helpers/spire.ts';
import { freePort, tempDir, waitFor } from '../helpers/tmp.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

// Starting a cluster and waiting out grace periods and TTLs takes longer than tap's default per file.
t.setTimeout(900_000);

const SPIFFE_ID = `spiffe://${TRUST_DOMAIN}/vm/web`;
const NAMESPACE = 'mh-e2e-reg';

t.test('harness → registrar → kube-apiserver: the ExternalWorkload appears and Ready follows the proxy', { skip: SKIP_WITHOUT_SETUP || SKIP_WITHOUT_KUBE || SKIP_WITHOUT_SPIRE, timeout: 300_000 }, async (t) => {
  const cluster = await KubeCluster.start(t);
  // Real SPIRE: the registrar's certificate comes from SPIRE's upstream root, so it trusts the harness's SVIDs.
  const spire = await SpireServer.start(t, { defaultSvidTtl: '1m' });
  const pki = await makePki(t, TRUST_DOMAIN, spire.ca);
  const agent = await spire.startAgent('vm');
  // The proxy runs as nobody and must reach the agent socket.
  chmodSync(spire.dir, 0o755);
  chmodSync(agent.dir, 0o755);
  // The harness (root here; group meshproxy in production) and the proxy (nogroup) hold the same identity.
  for (const gid of [0, 65534]) await spire.createEntry({ parentId: agent.spiffeId, spiffeId: SPIFFE_ID, selector: `unix:gid:${gid}`, x509SvidTtl: 60 });
  const dir = tempDir(t, 'mh-e2e-registration-');
  chmodSync(dir, 0o755);
  await cluster.kubectl(['create', 'namespace', NAMESPACE]);
  await cluster.kubectl(['apply', '-f', '-'], { input: groupManifest({ name: 'web', namespace: NAMESPACE, allowedIdentities: [`spiffe://${TRUST_DOMAIN}/vm/*`], labels: { app: 'web' }, ports: [{ port: 8080, name: 'http' }], serverName: 'web.vm.example' }) });
  const registrar = await ReplicaProcess.start(t, { replica: 'reg-e2e', pki, kubeconfig: cluster.registrarKubeconfig, grace: '1m', ttl: '5m' });


  const [adminPort, inboundPort, outboundPort, proxyAdminPort, controlPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const config = {
    workload: { group: 'web', namespace: NAMESPACE, nodeName: 'vm-e2e', ips: ['192.0.2.50'], ports: [8080] },
    identity: { spiffeId: SPIFFE_ID, serverName: 'web.vm.example', workloadApiSocket: `unix://${agent.socketPath}`, trustAnchorsFile: spire.anchorsFile },
    proxy: { binary: writeDevProxyLauncher(dir), user: 'nobody', group: 'nogroup', destinationAddr: '127.0.0.1:8086', inboundPort, outboundPort, adminPort: proxyAdminPort, controlPort, shutdownGrace: '1s' },
    iptables: { enabled: false },
    control: { registrarAddress: registrar.grpcAddress, registrarIdentity: REGISTRAR_ID },
    admin: { port: adminPort },
    log: { format: 'json', level: 'info' },
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const harnessLog = openSync(join(dir, 'harness.log'), 'a');
  const harness = spawn(process.execPath, [harnessBin, 'run', '--config', join(dir, 'config.json')], { stdio: ['ignore', harnessLog, harnessLog] });
  closeSync(harnessLog);
  t.teardown(() => {
    if (harness.exitCode === null && harness.signalCode === null) harness.kill('SIGKILL');
  });

  const name = workloadName({ namespace: NAMESPACE, group: 'web', nodeName: 'vm-e2e', spiffeId: SPIFFE_ID });
  const get = async (): Promise<ExternalWorkload | undefined> => {
    const { status, body } = await cluster.request('GET', `/apis/workload.linkerd.io/v1beta1/namespaces/${NAMESPACE}/externalworkloads/${name}`);
    return status === 200 ? (body as ExternalWorkload) : undefined;
  };
  const readyIs = (status: 'True' | 'False', reason?: string) =>
    waitFor(`Ready=${status}${reason ? ` (${reason})` : ''}`, async () => {
      const workload = await get();
      const condition = workload?.status?.conditions?.find((c) => c.type === 'Ready');
      return condition?.status === status && (!reason || condition.reason === reason) ? workload : undefined;
    }, 90_000, 200).catch((err: Error) => {
      throw new Error(`${err.message}\nharness log:\n${readFileSync(join(dir, 'harness.log'), 'utf8').slice(-4000)}`);
    });
  const status = async () => (await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json()) as { components: Array<{ name: string; phase: string; message: string; detail?: Record<string, unknown> }> };

  const workload = await readyIs('True');
  t.same(workload.spec.meshTLS, { identity: SPIFFE_ID, serverName: 'web.vm.example' });
  t.same(workload.spec.workloadIPs, [{ ip: '192.0.2.50' }]);
  t.same(workload.spec.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  t.equal(workload.metadata.labels?.['app'], 'web');
  const registration = (await status()).components.find((c) => c.name === 'registration');
  t.equal(registration?.phase, 'Ready');
  t.match(registration?.message, new RegExp(`registered as ${name}`));

  const proxyPid = (await status()).components.find((c) => c.name === 'proxy')?.detail?.['pid'] as number;
  t.ok(proxyPid, 'the proxy runs');
  t.match(readFileSync(`/proc/${proxyPid}/environ`, 'utf8'), new RegExp(`LINKERD2_PROXY_POLICY_WORKLOAD=\\{"ns":"${NAMESPACE}","external_workload":"${name}"\\}`), 'the proxy got the derived name');
  process.kill(proxyPid, 'SIGKILL');
  await readyIs('False', 'ProxyNotReady');
  await readyIs('True');

  harness.kill('SIGTERM');
  await readyIs('False', 'Draining');
  if (harness.exitCode === null && harness.signalCode === null) await new Promise((resolve) => harness.once('exit', resolve));
  t.equal(harness.exitCode, 0, 'the harness stopped cleanly');
});
