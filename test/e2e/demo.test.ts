/**
 * `mesh-harness demo` as a new user runs it: as root, from a checkout in a directory only
 * root can enter, interrupted with Ctrl-C, or killed outright and run again; over a real
 * kube-apiserver (what --store auto picks where one is installed, as under CI) and over the
 * embedded store.
 */
import t from 'tap';
import { execa, type ResultPromise } from 'execa';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeDevProxyLauncher } from '../../src/dev/proxy/launcher.ts';
import { spireAvailable } from '../../src/dev/spire-server.ts';
import { listNetns, netnsPids, processesMentioning } from '../../src/util/netns.ts';
import { cleanEnv, repoRoot } from '../helpers/cli.ts';
import { SKIP_WITHOUT_KUBE } from '../helpers/kube.ts';
import { readableTempDir, tempDir, waitFor } from '../helpers/tmp.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

// Five whole demo runs, each waiting out the registrar's grace and TTL, on a machine shared with other runs.
t.setTimeout(900_000);

interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * The package as a clone has it (bin/, dist/, proto/, package.json, node_modules), under a
 * fresh 0700 directory like /root or any `mktemp -d`.
 */
function privateCheckout(t: Teardown): string {
  const dir = tempDir(t, 'mh-proxyhelper-');
  const checkout = join(dir, 'mesh-harness');
  mkdirSync(checkout);
  for (const entry of ['bin', 'dist', 'proto', 'deploy', 'package.json']) cpSync(join(repoRoot, entry), join(checkout, entry), { recursive: true });
  // Nothing beside the clone: the demo must work from the repository alone (a fresh machine has no shared/).
  symlinkSync(join(repoRoot, 'node_modules'), join(checkout, 'node_modules'));
  return checkout;
}

interface DemoRun {
  child: ResultPromise;
  output: () => string;
  /** Resolves with the output once it matches. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** The demo as a person at a terminal runs it: under a pseudo-terminal (script(1) from util-linux). */
function startDemo(t: Teardown, checkout: string, args: string[] = [], tty = false): DemoRun {
  const argv = [process.execPath, join(checkout, 'bin', 'mesh-harness.mjs'), 'demo', ...args];
  const child = execa(tty ? 'script' : argv[0]!, tty ? ['-qefc', argv.join(' '), '/dev/null'] : argv.slice(1), { env: cleanEnv(), extendEnv: false, nodeOptions: [], reject: false, all: true, buffer: true });
  t.teardown(() => {
    if (child.exitCode === undefined || child.exitCode === null) child.kill('SIGKILL');
  });
  let text = '';
  child.all!.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  return {
    child,
    output: () => text,
    waitFor: (pattern, timeoutMs = 120_000) => waitFor(`demo output matching ${pattern}; got:\n${text}`, () => pattern.exec(text) ?? undefined, timeoutMs),
  };
}

/** Running, and not a zombie waiting for init to reap it. */
function alive(pid: number): boolean {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
  } catch {
    return false;
  }
}

/** The PIDs still alive after a generous moment (a process killed a moment ago takes a little while to go). */
async function survivors(pids: number[]): Promise<number[]> {
  await waitFor('killed processes to go', () => (pids.some(alive) ? undefined : true), 10_000).catch(() => undefined);
  return pids.filter(alive);
}

t.test('SIGINT (twice) to the demo process alone mid-way leaves nothing behind', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const checkout = privateCheckout(t);
  const demo = startDemo(t, checkout);
  const [, runDir] = await demo.waitFor(/config (\S+)\/config\.json, log/);
  const [, vm] = await demo.waitFor(/^ {4}(mh-demo-vm-\w+) \(/m);
  // The harness, its proxy, nft monitor and the workload all run in the vm namespace.
  const inVm = await waitFor('the harness and its children in the vm', async () => {
    const pids = await netnsPids(vm!);
    return pids.length >= 3 ? pids : undefined;
  });
  process.kill(demo.child.pid!, 'SIGINT');
  // The second Ctrl-C lands during the cleanup; on an idle machine the cleanup may already be over.
  await new Promise((r) => setTimeout(r, 50));
  try {
    process.kill(demo.child.pid!, 'SIGINT');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    t.comment('the demo had already finished its cleanup before the second SIGINT');
  }
  const result = await demo.child;
  t.equal(result.exitCode, 130, 'exits as interrupted');
  t.match(demo.output(), /SIGINT: stopping the playground/);
  t.match(demo.output(), /namespaces, processes and files removed/, 'the cleanup ran to its end');
  t.same((await listNetns('mh-demo-')).filter((ns) => ns.endsWith(vm!.slice(-6))), [], 'no namespace of this run');
  t.same(await survivors(inVm), [], 'nothing that ran in the vm namespace survives (nft monitor included)');
  t.same(processesMentioning(runDir!), [], 'no process of this run');
  t.same(processesMentioning(checkout), [], 'no process from the checkout');
  t.notOk(existsSync(runDir!), 'its directory is gone');
});

t.test('from a checkout under a 0700 directory: a SIGKILLed run is swept by the next, which runs the whole flow', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const checkout = privateCheckout(t);
  const killed = startDemo(t, checkout);
  const [, runDir] = await killed.waitFor(/config (\S+)\/config\.json, log/);
  const [, vm] = await killed.waitFor(/^ {4}(mh-demo-vm-\w+) \(/m);
  killed.child.kill('SIGKILL');
  await killed.child;
  t.ok(existsSync(runDir!), 'a SIGKILLed run leaves its directory');
  t.ok((await listNetns('mh-demo-')).includes(vm!), 'and its namespaces');
  const left = await netnsPids(vm!);

  // The development Workload API on purpose: the terminal test below takes SPIRE when it is installed.
  const demo = startDemo(t, checkout, ['--identity', 'dev']);
  const result = await demo.child;
  const out = demo.output();
  t.equal(result.exitCode, 0, out);
  t.match(out, /identity\s+development Workload API/);
  t.match(out, /Removing what an earlier demo left behind/);
  t.match(out, new RegExp(`network namespace ${vm} and everything running in it`));
  t.match(out, new RegExp(`directory ${runDir}`));
  t.notOk(existsSync(runDir!));
  t.same(await survivors(left), [], 'what ran in the abandoned namespace is gone');

  t.match(out, /before the mesh: hello from the VM workload; your connection came from 198\.18\.99\.1/);
  t.match(out, /inbound redirect\s+yes, through the proxy/);
  t.match(out, /outbound redirect\s+yes, through the proxy/);
  t.match(out, /proxy crash\s+restarted and ready/);
  t.match(out, /ExternalWorkload\s+demo\/web-vm-demo-\w+ Ready=True/);
  t.match(out, /VM death\s+Ready=False \(Disconnected\)/);
  t.match(out, /garbage collection\s+ExternalWorkload collected/);
  const id = vm!.slice(-6);
  t.same((await listNetns('mh-demo-')).filter((ns) => ns.endsWith(id)), [], 'no namespace of either run');
  t.same(processesMentioning(checkout), [], 'no process from the checkout');
});

t.test('under a terminal, embedded store: the registrar in the cluster namespace, the ExternalWorkload as YAML, the VM dying and collected', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const checkout = privateCheckout(t);
  const demo = startDemo(t, checkout, ['--store', 'embedded'], true);
  const [, vm] = await demo.waitFor(/^ {4}(mh-demo-vm-\w+) \(/m);
  const [, runDir] = await demo.waitFor(/config (\S+)\/config\.json, log/);
  const result = await demo.child;
  const out = demo.output().replace(/\r\n/g, '\n');
  t.equal(result.exitCode, 0, out);
  t.match(out, /<->\s+mh-demo-cluster-\w+ \(198\.18\.98\.1\)/);
  t.match(out, /serving on 198\.18\.98\.1:8443 \(mutual TLS\)/);
  t.match(out, /in-memory store/);
  t.match(out, /store\s+embedded \(in memory\)/);
  t.match(out, /SVID issued: spiffe:\/\/root\.linkerd\.cluster\.local\/demo\/web, valid until/);
  t.match(out, /-A MESH_HARNESS_INBOUND .*REDIRECT --to-ports 4143/, 'the rules applied');
  t.match(out, /kind: ExternalWorkload\n\s+metadata:\n\s+name: web-vm-demo-\w+\n\s+namespace: demo/, 'the ExternalWorkload as YAML');
  t.match(out, /identity: spiffe:\/\/root\.linkerd\.cluster\.local\/demo\/web/);
  t.match(out, /ExternalWorkload\s+demo\/web-vm-demo-\w+ Ready=True/);
  t.match(out, /inbound redirect\s+yes, through the proxy/);
  t.match(out, /VM death\s+Ready=False \(Disconnected\) after [\d.]+ s \(grace 3 s\)/);
  t.match(out, /garbage collection\s+ExternalWorkload collected after [\d.]+ s \(TTL 12 s\)/);
  t.match(out, /Ready=False \(ProbeFailed\) after [\d.]+ s: GET http:\/\/127\.0\.0\.1:8080\/healthz: 503/, 'the probe failure, as the ExternalWorkload says it');
  t.match(out, /proxy crash\s+restarted and ready in [\d.]+ s; ExternalWorkload Ready=False \(ProxyNotReady\) meanwhile, then True/, 'the registrar took the VM out while its proxy was down');
  t.match(out, /workload probe\s+Ready=False \(ProbeFailed\) [\d.]+ s after failing, True [\d.]+ s after recovering/);
  if (spireAvailable() || process.env.CI) {
    t.match(out, /spire-server [\d.]+ on 198\.18\.98\.1:8081/);
    t.match(out, /spire-agent Ready: running and ready/, 'the harness runs spire-agent');
    t.match(out, /identity\s+SPIRE [\d.]+: spire-server in the cluster, spire-agent run by the harness/);
  } else t.match(out, /identity\s+development Workload API \(SPIRE not installed\)/);
  const id = vm!.slice(-6);
  t.same((await listNetns('mh-demo-')).filter((ns) => ns.endsWith(id)), [], 'no namespace of this run (cluster, vm, client)');
  t.same(processesMentioning(runDir!), [], 'no process of this run');
  t.same(processesMentioning(checkout), [], 'no process from the checkout');
  t.notOk(existsSync(runDir!), 'its directory is gone');
});

t.test('--keep leaves it running with the poke lines, which work; Ctrl-C removes it all', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const checkout = privateCheckout(t);
  const demo = startDemo(t, checkout, ['--keep']);
  const [, runDir] = await demo.waitFor(/config (\S+)\/config\.json, log/);
  const [, vm] = await demo.waitFor(/^ {4}(mh-demo-vm-\w+) \(/m);
  const [, statusLine] = await demo.waitFor(/^ {4}(ip netns exec mh-demo-vm-\w+ \S+ \S+ status --config \S+)$/m);
  const status = await execa(statusLine!, { shell: true, reject: false, env: cleanEnv(), extendEnv: false });
  t.equal(status.exitCode, 0, `the status line works: ${status.stderr}`);
  t.match(String(status.stdout), /registration/);
  const [, curlLine] = await demo.waitFor(/^ {4}(ip netns exec mh-demo-client-\w+ curl -s http:\S+)$/m);
  const curl = await execa(curlLine!, { shell: true, reject: false });
  t.match(String(curl.stdout), /hello from the VM workload; your connection came from 127\.0\.0\.1/, 'the curl line goes through the proxy');
  if (!SKIP_WITHOUT_KUBE) {
    // auto picked the kube-apiserver: its kubectl line shows the ExternalWorkload.
    const [, kubectlLine] = await demo.waitFor(/^ {4}(ip netns exec mh-demo-cluster-\w+ kubectl .+)$/m);
    const get = await execa(kubectlLine!, { shell: true, reject: false, env: cleanEnv({ HOME: tempDir(t, 'mh-kubectl-home-') }), extendEnv: false });
    t.match(String(get.stdout), /kind: ExternalWorkload[\s\S]*name: web-vm-demo-/, `the kubectl line works: ${get.stderr}`);
  }
  process.kill(demo.child.pid!, 'SIGINT');
  const result = await demo.child;
  t.equal(result.exitCode, 130);
  t.match(demo.output(), /namespaces, processes and files removed/);
  t.same((await listNetns('mh-demo-')).filter((ns) => ns.endsWith(vm!.slice(-6))), [], 'no namespace of this run');
  t.same(processesMentioning(runDir!), [], 'no process of this run');
});

t.test('--store kube: etcd and kube-apiserver in the cluster namespace, the ExternalWorkload from the API server, nothing left behind', { skip: SKIP_WITHOUT_SETUP || SKIP_WITHOUT_KUBE }, async (t) => {
  const checkout = privateCheckout(t);
  const demo = startDemo(t, checkout, ['--store', 'kube']);
  const [, cluster] = await demo.waitFor(/^ {4}\S+ {2}<-> {2}(mh-demo-cluster-\w+) \(/m);
  const [, kubeDir] = await demo.waitFor(/kube-apiserver ready after [\d.]+ s on https:\/\/127\.0\.0\.1:6443 \(inside the cluster namespace\), logs in (\S+)/);
  await demo.waitFor(/config \S+\/config\.json, log/);
  const inCluster = await netnsPids(cluster!);
  const result = await demo.child;
  const out = demo.output();
  t.equal(result.exitCode, 0, out);
  t.match(out, /starting etcd and kube-apiserver \(a few seconds\)/);
  t.match(out, /the registrar signs in as ServiceAccount mesh-expansion\/mesh-registrar/);
  t.match(out, /store\s+kube-apiserver \(real API server, deploy\/kubernetes RBAC\)/);
  // The object as the API server keeps it (uid, resourceVersion, creationTimestamp), without managedFields.
  t.match(out, /kind: ExternalWorkload\n\s+metadata:[\s\S]*creationTimestamp: [\s\S]*uid: [0-9a-f-]{36}\n\s+spec:/, 'the ExternalWorkload as YAML, from the API server');
  t.notMatch(out, /managedFields/);
  t.match(out, /ExternalWorkload\s+demo\/web-vm-demo-\w+ Ready=True/);
  t.match(out, /VM death\s+Ready=False \(Disconnected\)/);
  t.match(out, /garbage collection\s+ExternalWorkload collected/);
  t.ok(inCluster.length >= 3, `etcd, kube-apiserver and the registrar ran in the cluster namespace (pids ${inCluster.join(', ')})`);
  t.same(await survivors(inCluster), [], 'nothing that ran in the cluster namespace survives (etcd, kube-apiserver)');
  t.same((await listNetns('mh-demo-')).filter((ns) => ns.endsWith(cluster!.slice(-6))), [], 'no namespace of this run');
  t.same(processesMentioning(kubeDir!), [], 'no process of this run');
  t.same(processesMentioning(checkout), [], 'no process from the checkout');
  t.notOk(existsSync(kubeDir!), 'its directory is gone');
});

t.test('--store kube where kube-apiserver is not installed: a clear error before any step', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  // A PATH with what the demo's preflight needs and none of kube-apiserver, etcd, kubectl.
  const bin = tempDir(t, 'mh-nokube-path-');
  for (const tool of ['sh', 'ip', 'iptables-restore', 'setpriv']) {
    const found = await execa('sh', ['-c', `command -v ${tool}`]);
    symlinkSync(found.stdout.trim(), join(bin, tool));
  }
  const result = await execa(process.execPath, [join(repoRoot, 'bin', 'mesh-harness.mjs'), 'demo', '--store', 'kube'], { env: { ...cleanEnv(), PATH: bin }, extendEnv: false, nodeOptions: [], reject: false, all: true });
  t.equal(result.exitCode, 69, 'EXIT.UNAVAILABLE');
  t.match(result.all, /--store kube: kube-apiserver, etcd, kubectl(, openssl)? not found; run scripts\/install-kube-apiserver\.sh and apt-get install etcd-server/);
  t.notMatch(result.all, /==>/, 'not one step taken');
});

t.test('--store takes auto, kube or embedded', async (t) => {
  const result = await execa(process.execPath, [join(repoRoot, 'bin', 'mesh-harness.mjs'), 'demo', '--store', 'etcd'], { env: cleanEnv(), extendEnv: false, nodeOptions: [], reject: false, all: true });
  t.equal(result.exitCode, 64);
  t.match(result.all, /--store must be auto, kube, embedded; got "etcd"/);
});

t.test('--identity spire where SPIRE is not installed: a clear error before any step', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const bin = tempDir(t, 'mh-nospire-path-');
  for (const tool of ['sh', 'ip', 'iptables-restore', 'setpriv']) {
    const found = await execa('sh', ['-c', `command -v ${tool}`]);
    symlinkSync(found.stdout.trim(), join(bin, tool));
  }
  const result = await execa(process.execPath, [join(repoRoot, 'bin', 'mesh-harness.mjs'), 'demo', '--store', 'embedded', '--identity', 'spire'], { env: { ...cleanEnv(), PATH: bin }, extendEnv: false, nodeOptions: [], reject: false, all: true });
  t.equal(result.exitCode, 69, 'EXIT.UNAVAILABLE');
  t.match(result.all, /--identity spire: spire-server and spire-agent are not on PATH; install them with scripts\/install-spire\.sh/);
  t.notMatch(result.all, /==>/, 'not one step taken');
});

t.test('--identity and --proxy-binary are checked before anything runs', async (t) => {
  const run = (args: string[]) => execa(process.execPath, [join(repoRoot, 'bin', 'mesh-harness.mjs'), 'demo', ...args], { env: cleanEnv(), extendEnv: false, nodeOptions: [], reject: false, all: true });
  const identity = await run(['--identity', 'vault']);
  t.equal(identity.exitCode, 64);
  t.match(identity.all, /--identity must be auto, spire, dev; got "vault"/);
  const relative = await run(['--proxy-binary', 'linkerd2-proxy']);
  t.equal(relative.exitCode, 64);
  t.match(relative.all, /--proxy-binary must be an absolute path, got "linkerd2-proxy"/);
  const missing = await run(['--proxy-binary', '/nonexistent/linkerd2-proxy']);
  t.equal(missing.exitCode, 64);
  t.match(missing.all, /--proxy-binary \/nonexistent\/linkerd2-proxy: no such file/);
});

/**
 * A stand-in for linkerd2-proxy with no destination service behind proxy.destinationAddr (the
 * playground runs none): everything of the proxy contract the harness needs (the development
 * proxy), but its outbound port held by a listener that accepts every connection and never
 * answers, as the real proxy does while it waits to resolve the destination.
 */
function silentOutboundProxy(dir: string): string {
  const devProxy = writeDevProxyLauncher(dir);
  const holder = join(dir, 'outbound-holder.cjs');
  writeFileSync(holder, `// Accepts on every address of argv[2] (a,b,...) and never answers.
const held = [];
for (const address of process.argv[2].split(',')) {
  const [, host, port] = /^\\[?(.+?)\\]?:(\\d+)$/.exec(address);
  require('node:net').createServer((socket) => held.push(socket)).on('error', () => {}).listen(Number(port), host);
}
`, { mode: 0o644 });
  const proxy = join(dir, 'silent-outbound-proxy');
  writeFileSync(proxy, `#!/bin/sh
unset NODE_OPTIONS
# Dies with the proxy (the exec below keeps this shell's pid), as the proxy's own listener would.
setpriv --pdeathsig KILL -- ${process.execPath} ${holder} "\${LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS:-\$LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR}" &
LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:14140 LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS=127.0.0.1:14140 exec ${devProxy} "$@"
`, { mode: 0o755 });
  return proxy;
}

t.test('--proxy-binary: the demo runs the given proxy; one that holds outbound connections without answering is reported, and the demo goes on', { skip: SKIP_WITHOUT_SETUP, timeout: 600_000 }, async (t) => {
  // A proxy of our choosing at a path of our choosing, where the proxy user (nobody) can run it.
  const proxy = silentOutboundProxy(readableTempDir(t, 'mh-own-proxy-'));
  const checkout = privateCheckout(t);
  const demo = startDemo(t, checkout, ['--store', 'embedded', '--identity', 'dev', '--proxy-binary', proxy]);
  const [, runDir] = await demo.waitFor(/config (\S+)\/config\.json, log/);
  const harnessConfig = JSON.parse(readFileSync(join(runDir!, 'config.json'), 'utf8')) as { proxy: { binary: string } };
  t.equal(harnessConfig.proxy.binary, proxy, 'the harness is told to run the given proxy');
  const result = await demo.child;
  const out = demo.output();
  t.equal(result.exitCode, 0, out);
  t.match(out, new RegExp(`proxy\\s+${proxy.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(given with --proxy-binary\\)`));
  t.match(out, /inbound redirect\s+yes, through the proxy/);
  t.match(out, /workload \(uid 1000\) -> 198\.18\.99\.1:9: accepted the connection and sent nothing back within 5 s/, 'the outbound step says what it saw');
  t.match(out, /nothing listens on 198\.18\.99\.1:9, yet the connection was accepted, so iptables sent it to the proxy/);
  t.match(out, /outbound redirect\s+not checked: the proxy took the connection and held it 5 s without an answer/);
  t.match(out, /proxy crash\s+restarted and ready/, 'and the demo went on');
  t.match(out, /garbage collection\s+ExternalWorkload collected/, 'to its summary');
  t.notOk(existsSync(runDir!), 'its directory is gone');
});
