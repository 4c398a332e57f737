/**
 * The ExternalGroup editor's reach into a VM, played as an attacker, end to end: the built
 * harness runs in a "vm" network namespace (as root with primary group meshproxy, as the
 * unit runs it, with real iptables and the development proxy as meshproxy), registers with
 * a real mesh-registrar (embedded store) in a "cluster" namespace, and receives the group's
 * probes: an httpGet to the cloud metadata address 169.254.169.254 with a Metadata-Flavor
 * header, and a tcpSocket to a host in a third, "remote" namespace.
 *
 * Without probes.allowClusterHosts both are refused, the metadata service never sees a
 * request, and the reason is on the ExternalWorkload's Ready condition and in `status`. The
 * VM's owner then allows both addresses (SIGHUP): the metadata probe reaches the service
 * (directly: it is in iptables.ignoreOutboundSubnets), and the tcpSocket probe passes only
 * because its connection went to the proxy's outbound port: nothing listens on the remote
 * port, and a connection from the harness's own, exempt group is refused there.
 */
import t from 'tap';
import { execa, type ResultPromise } from 'execa';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLUSTER_IP, DemoCluster, REGISTRAR_ID, REGISTRAR_PORT, VM_CLUSTER_SIDE_IP } from '../../src/dev/demo-cluster.ts';
import { writeDevProxyLauncher } from '../../src/dev/proxy/launcher.ts';
import { workloadName } from '../../src/protocol/workload-name.ts';
import type { ExternalGroup } from '../../src/registrar/store.ts';
import { resolveGroup, resolveUser } from '../../src/util/users.ts';
import { harnessBin, repoRoot } from '../helpers/cli.ts';
import { startHarnessIn } from '../helpers/harness.ts';
import { childEnv, connectFrom, createNetns, linkNetns, startScriptIn } from '../helpers/netns.ts';
import { groupManifest, TRUST_DOMAIN } from '../helpers/registrar.ts';
import { tempDir, waitFor } from '../helpers/tmp.ts';

t.setTimeout(600_000);

const SPIFFE_ID = `spiffe://${TRUST_DOMAIN}/vm/web`;
const NAMESPACE = 'mh-cluster-probes';
const VM_REMOTE_SIDE_IP = '198.18.97.2';
const REMOTE_IP = '198.18.97.1';
const METADATA_IP = '169.254.169.254';
/** Nothing listens there: only the proxy can make a connection to it succeed. */
const REMOTE_DB_PORT = 5432;

/** A metadata service that logs every request it gets, and answers 200 only with the header a cloud requires. */
const METADATA_SERVICE = `
const { appendFileSync } = require('node:fs');
require('node:http').createServer((req, res) => {
  appendFileSync(process.argv[1], JSON.stringify({ from: req.socket.remoteAddress, url: req.url, flavor: req.headers['metadata-flavor'] ?? null }) + '\\n');
  res.statusCode = req.headers['metadata-flavor'] === 'Google' ? 200 : 403;
  res.end();
}).listen(80, '${METADATA_IP}', () => console.log('ready'));
`;

interface ProbesDetail {
  probes: Array<{ name: string; source: string; passing: boolean }>;
  refusals: unknown[];
  runner: { uid?: number; gid?: number };
}

const PROBES = [
  { name: 'metadata', httpGet: { host: METADATA_IP, port: 80, path: '/computeMetadata/v1/instance/service-accounts/default/token', httpHeaders: [{ name: 'Metadata-Flavor', value: 'Google' }] }, periodSeconds: 1, failureThreshold: 1 },
  { name: 'db', tcpSocket: { host: REMOTE_IP, port: REMOTE_DB_PORT }, periodSeconds: 1, failureThreshold: 1 },
];

t.test('cluster probes beyond loopback and the workload IPs are refused with the reason on the ExternalWorkload; probes.allowClusterHosts admits them, through the mesh', { timeout: 400_000 }, async (t) => {
  const dir = tempDir(t, 'mh-cluster-probes-');
  // The proxy (meshproxy) reads its launcher here, and the probe runner (nobody) nothing.
  chmodSync(dir, 0o755);
  const [vm, cluster, remote] = [await createNetns(t, 'cp-vm'), await createNetns(t, 'cp-cluster'), await createNetns(t, 'cp-remote')];
  await linkNetns(vm, cluster, { a: [`${VM_CLUSTER_SIDE_IP}/24`], b: [`${CLUSTER_IP}/24`] });
  await linkNetns(vm, remote, { a: [`${VM_REMOTE_SIDE_IP}/24`], b: [`${REMOTE_IP}/24`, `${METADATA_IP}/32`] });
  await vm.exec(['ip', 'route', 'add', `${METADATA_IP}/32`, 'via', REMOTE_IP]);
  const metadataLog = join(dir, 'metadata.log');
  writeFileSync(metadataLog, '');
  await startScriptIn(t, remote, 'the metadata service', METADATA_SERVICE, [metadataLog]);
  const metadataRequests = () => readFileSync(metadataLog, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as { from: string; url: string; flavor: string | null });

  // The cluster: mesh-registrar with the embedded store, the group applied.
  const children: ResultPromise[] = [];
  t.teardown(() => {
    for (const child of children) child.kill('SIGKILL');
  });
  const group = JSON.parse(groupManifest({ name: 'web', namespace: NAMESPACE, allowedIdentities: [SPIFFE_ID], probes: PROBES })) as ExternalGroup;
  const registrar = new DemoCluster({
    root: repoRoot, dir, ns: cluster.name, vm: vm.name, id: 'cp', group, store: 'embedded',
    ip: async (args) => void (await execa('ip', args, { env: childEnv(), extendEnv: false })),
    track: (child) => children.push(child),
  });
  const pki = await registrar.pki();
  await registrar.start(pki.anchors, () => undefined);

  // Identity: the development Workload API, signing with the CA the registrar trusts.
  const socket = join(dir, 'api.sock');
  const api = execa(process.execPath, [join(repoRoot, 'dist', 'dev-workload-api.js'), '--socket', socket, '--spiffe-id', SPIFFE_ID, '--ca-cert', pki.caCert, '--ca-key', pki.caKey, '--ttl', '10m', '--log-level', 'warn'], { env: childEnv(), extendEnv: false, reject: false });
  children.push(api);
  await waitFor('the Workload API socket', () => (existsSync(socket) ? true : undefined), 30_000);
  chmodSync(socket, 0o777);

  const meshproxy = await resolveGroup('meshproxy');
  const nobody = await resolveUser('nobody');
  const configPath = join(dir, 'config.json');
  const config = (allowClusterHosts: string[]) => ({
    workload: { group: 'web', namespace: NAMESPACE, nodeName: 'vm-probes', ips: [VM_CLUSTER_SIDE_IP] },
    identity: { spiffeId: SPIFFE_ID, serverName: `web.${NAMESPACE}.vm.example`, workloadApiSocket: `unix://${socket}`, trustAnchorsFile: pki.anchors },
    proxy: { binary: writeDevProxyLauncher(dir), user: 'meshproxy', group: 'meshproxy', destinationAddr: '127.0.0.1:8086', shutdownGrace: '1s' },
    // The metadata service is reached directly, as the docs advise; everything else goes through the proxy.
    iptables: { ipv6: 'off', onStop: 'clean', ignoreOutboundSubnets: [`${METADATA_IP}/32`] },
    control: { registrarAddress: `${CLUSTER_IP}:${REGISTRAR_PORT}`, registrarIdentity: REGISTRAR_ID, heartbeatInterval: '1s' },
    probes: { allowClusterHosts },
    log: { format: 'json', level: 'info' },
  });
  // Root-owned and 0644, as mesh-harness run requires.
  writeFileSync(configPath, JSON.stringify(config([]), null, 2), { mode: 0o644 });
  const harness = startHarnessIn(t, vm, configPath, join(dir, 'no-notify.sock'), { gid: meshproxy.gid });
  const logTail = () => harness.log.slice(-30).map((l) => `${l.component}: ${l.msg}`).join('\n');

  const name = workloadName({ namespace: NAMESPACE, group: 'web', nodeName: 'vm-probes', spiffeId: SPIFFE_ID });
  const readyIs = (status: 'True' | 'False', message?: RegExp) =>
    registrar.until(`${name} Ready=${status}`, () => {
      const condition = registrar.ready(name);
      return condition?.status === status && (!message || message.test(condition.message ?? '')) ? condition : undefined;
    }, 120_000).catch((err: Error) => {
      throw new Error(`${err.message}; Ready is ${JSON.stringify(registrar.ready(name))}\nharness log:\n${logTail()}`);
    });

  await t.test('refused: the reason is on the ExternalWorkload and in status, and nothing was sent', async (t) => {
    const refused = await readyIs('False', /refused/);
    t.equal(refused.reason, 'ProbeFailed');
    t.equal(refused.message, `httpGet probe metadata of ExternalGroup ${NAMESPACE}/web refused: it targets ${METADATA_IP}, which is neither loopback nor this workload's IPs (${VM_CLUSTER_SIDE_IP}); add the address to probes.allowClusterHosts in the VM's local config to allow it (+1 more refused)`);
    const status = await execa('ip', ['netns', 'exec', vm.name, process.execPath, harnessBin, 'status', '--config', configPath], { env: childEnv(), extendEnv: false, reject: false });
    t.match(status.stdout, new RegExp(`^refused: httpGet probe metadata of ExternalGroup ${NAMESPACE}/web refused: it targets 169\\.254\\.169\\.254`, 'm'));
    t.match(status.stdout, new RegExp(`^refused: tcpSocket probe db of ExternalGroup ${NAMESPACE}/web refused: it targets ${REMOTE_IP.replace(/\./g, '\\.')}, which is neither loopback nor`, 'm'));
    await new Promise((resolve) => setTimeout(resolve, 3000));
    t.same(metadataRequests(), [], 'the metadata service never saw a request');
  });

  await t.test('admitted by the VM\'s own config: the probes run, and the remote one goes through the proxy', async (t) => {
    writeFileSync(configPath, JSON.stringify(config([`${METADATA_IP}/32`, `${REMOTE_IP}/32`]), null, 2));
    process.kill(harness.pid, 'SIGHUP');
    await readyIs('True');

    const requests = metadataRequests();
    t.ok(requests.length > 0, 'the metadata probe reached the service');
    t.same(requests[0], { from: VM_REMOTE_SIDE_IP, url: '/computeMetadata/v1/instance/service-accounts/default/token', flavor: 'Google' }, 'with the group\'s header, once the VM allowed the address');

    const rules = await vm.exec(['iptables-save', '-t', 'nat']);
    t.match(rules, /-A OUTPUT .*-j MESH_HARNESS_OUTBOUND/, 'outbound redirection is on');
    // What the tcpSocket probe's success rests on: the remote port is closed, so only a
    // redirected connection succeeds; the harness's own group would have gone around the proxy.
    const target = [{ host: REMOTE_IP, port: REMOTE_DB_PORT }];
    const [exempt] = await connectFrom(vm, { uid: 0, gid: meshproxy.gid }, target);
    t.equal(exempt, 'error: ECONNREFUSED', 'from the harness\'s group (exempt), the port is closed');
    const [asRunner] = await connectFrom(vm, nobody, target);
    t.equal(asRunner, `mesh-dev-proxy outbound ${REMOTE_IP}:${REMOTE_DB_PORT}`, 'from the probe runner\'s account, the proxy answers');
    const metrics = await vm.exec([process.execPath, '-e', "fetch('http://127.0.0.1:4191/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    const outbound = Number(/^dev_proxy_connections_total\{direction="outbound"\} (\d+)$/m.exec(metrics)?.[1] ?? 0);
    t.ok(outbound >= 2, `the proxy's outbound port took the probe's connections too (${outbound} in all)`);

    const status = JSON.parse(await vm.exec([process.execPath, '-e', "fetch('http://127.0.0.1:4192/status').then((r) => r.text()).then((t) => process.stdout.write(t))"])) as { components: Array<{ name: string; detail?: ProbesDetail }> };
    const probes = status.components.find((c) => c.name === 'probes')?.detail;
    t.same(probes?.probes.map((p) => [p.name, p.source, p.passing]), [['metadata', 'cluster', true], ['db', 'cluster', true]]);
    t.same(probes?.refusals, []);
    t.same({ uid: probes?.runner.uid, gid: probes?.runner.gid }, { uid: nobody.uid, gid: nobody.gid }, 'the probe runner runs as probes.execUser, not with the exempt group');
  });

  process.kill(harness.pid, 'SIGTERM');
  t.equal((await harness.child).exitCode, 0, 'the harness stopped cleanly');
});
