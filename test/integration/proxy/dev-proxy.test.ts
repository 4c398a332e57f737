import t from 'tap';
import { connect, type Socket } from 'node:net';
import { DevCa } from '../../../src/dev/ca.ts';
import { renderProxyEnv } from '../../../src/proxy/env.ts';
import { createNetns } from '../../helpers/netns.ts';
import { waitFor } from '../../helpers/tmp.ts';
import { buildDevProxy } from './dev-proxy-bin.ts';
import { echoServer, exchange, httpGet, proxyConfig, runDevProxy, SPIFFE_ID, TRUST_DOMAIN, workloadApi } from './helpers.ts';
import { SKIP_WITHOUT_SETUP } from '../../helpers/host.ts';

const { executable } = await buildDevProxy(t);

t.test('exits 64 naming every missing required variable', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const proxy = runDevProxy(t, executable, {});
  const result = await proxy.child;
  t.equal(result.exitCode, 64);
  for (const name of [
    'LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS',
    'LINKERD2_PROXY_IDENTITY_SERVER_ID',
    'LINKERD2_PROXY_IDENTITY_SERVER_NAME',
    'LINKERD2_PROXY_IDENTITY_SPIRE_WORKLOAD_API_ADDRESS',
    'LINKERD2_PROXY_DESTINATION_SVC_ADDR',
    'LINKERD2_PROXY_POLICY_SVC_ADDR',
    'LINKERD2_PROXY_POLICY_WORKLOAD',
  ]) {
    t.ok(proxy.lines.some((l) => l.includes(`${name} must be set`)), `names ${name}`);
  }
});

t.test('exits 64 naming each invalid variable of an otherwise complete environment', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const { socketPath, ca } = await workloadApi(t);
  const env = renderProxyEnv(await proxyConfig(t, { socketPath }), { workloadName: 'web-1', trustAnchorsPem: ca.bundlePem });
  const proxy = runDevProxy(t, executable, {
    ...env,
    LINKERD2_PROXY_INBOUND_LISTEN_ADDR: 'localhost:4143',
    LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD: '1.5s',
    LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS: 'not a certificate',
    LINKERD2_PROXY_LOG_FORMAT: 'json',
  });
  const result = await proxy.child;
  t.equal(result.exitCode, 64);
  const messages = proxy.lines.map((l) => JSON.parse(l) as { level: string; message: string });
  t.ok(messages.every((m) => m.level === 'ERROR'), 'JSON log lines with the level the harness parses');
  for (const name of ['LINKERD2_PROXY_INBOUND_LISTEN_ADDR', 'LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD', 'LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS']) {
    t.ok(messages.some((m) => m.message.startsWith(name) || m.message.includes(`${name}:`)), `names ${name}`);
  }
  t.equal(messages.length, 4, 'one line per problem, then the summary');
});

/** The expiry the proxy reports, in seconds, as the real proxy writes it (an f64: "1763769600.0"). */
function reportedExpiry(metrics: string): string | undefined {
  return /^identity_cert_expiration_timestamp_seconds (\S+)$/m.exec(metrics)?.[1];
}

t.test('/ready is a latch as in linkerd2-proxy; the certificate shows in identity_cert_expiration_timestamp_seconds', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const { socketPath, ca, server } = await workloadApi(t);
  const config = await proxyConfig(t, { socketPath });
  const proxy = runDevProxy(t, executable, renderProxyEnv(config, { workloadName: 'web-1', trustAnchorsPem: ca.bundlePem }));
  const admin = config.proxy.adminPort;

  await proxy.waitForLine(/Admin interface on/);
  await proxy.waitForLine(/no identity issued|PermissionDenied|permission/i);
  t.equal((await httpGet(admin, '/live')).status, 200);
  t.same(await httpGet(admin, '/ready'), { status: 503, body: 'not ready\n' }, 'no SVID yet: not ready');
  t.equal(reportedExpiry((await httpGet(admin, '/metrics')).body), '0.0', 'no certificate: the gauge is 0, as a fresh prometheus gauge');

  await server.setIdentities([{ spiffeId: SPIFFE_ID }]);
  const certified = await proxy.waitForLine(/Certified identity id=spiffe:\/\/root\.linkerd\.cluster\.local\/vm\/web/);
  t.same(await httpGet(admin, '/ready'), { status: 200, body: 'ready\n' });
  const notAfter = Date.parse((JSON.parse(certified) as { notAfter: string }).notAfter) / 1000;
  t.equal(reportedExpiry((await httpGet(admin, '/metrics')).body), `${notAfter}.0`, 'the installed certificate expiry, in seconds since the epoch');

  await server.setIdentities([{ spiffeId: 'spiffe://root.linkerd.cluster.local/vm/other' }]);
  await proxy.waitForLine(/offers no SVID for spiffe:\/\/root\.linkerd\.cluster\.local\/vm\/web/);
  t.equal((await httpGet(admin, '/ready')).status, 200, 'the latch stays open');
  t.equal(reportedExpiry((await httpGet(admin, '/metrics')).body), `${notAfter}.0`, 'the installed certificate stays in use until it expires');
});

t.test('a Workload API socket the proxy user cannot open kills the identity task: /ready 200 without a certificate', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  // The failure seen with the real linkerd2-proxy: its identity task panics on the
  // permission error, the readiness latch opens anyway, and only the metric tells.
  const { socketPath, ca } = await workloadApi(t, [{ spiffeId: SPIFFE_ID }], { dirMode: 0o700 });
  const config = await proxyConfig(t, { socketPath });
  const proxy = runDevProxy(t, executable, renderProxyEnv(config, { workloadName: 'web-1', trustAnchorsPem: ca.bundlePem }), ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
  await proxy.waitForLine(/spire client must gracefully handle errors: .*PermissionDenied/);
  await proxy.waitForLine(/identity sender must be held/);
  t.equal((await httpGet(config.proxy.adminPort, '/ready')).status, 200);
  t.equal(reportedExpiry((await httpGet(config.proxy.adminPort, '/metrics')).body), '0.0');
  t.notOk(proxy.lines.some((l) => /Certified identity/.test(l)));
});

t.test('an SVID that does not chain to the trust anchors never makes it ready', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const { socketPath } = await workloadApi(t, [{ spiffeId: SPIFFE_ID }]);
  const stranger = await DevCa.create({ trustDomain: TRUST_DOMAIN, commonName: 'some other root' });
  const config = await proxyConfig(t, { socketPath });
  const proxy = runDevProxy(t, executable, renderProxyEnv(config, { workloadName: 'web-1', trustAnchorsPem: stranger.bundlePem }));
  await proxy.waitForLine(/does not verify against any trust anchor/);
  t.equal((await httpGet(config.proxy.adminPort, '/ready')).status, 503);
  t.notOk(proxy.lines.some((l) => /Certified identity/.test(l)));
});

t.test('inbound forwards to the workload port; outbound answers with the marker', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const { socketPath, ca } = await workloadApi(t, [{ spiffeId: SPIFFE_ID }]);
  const workload = await echoServer(t);
  const config = await proxyConfig(t, { socketPath, workloadPort: workload.port });
  const proxy = runDevProxy(t, executable, renderProxyEnv(config, { workloadName: 'web-1', trustAnchorsPem: ca.bundlePem }));
  await proxy.waitForLine(/Outbound interface on/);

  const echoed = await new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: config.proxy.inboundPort }, () => socket.end('hello through the proxy'));
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (data += c));
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
  });
  t.equal(echoed, 'hello through the proxy');
  t.match(await exchange(config.proxy.outboundPort, 'GET / HTTP/1.1\r\n\r\n'), /^mesh-dev-proxy outbound \S+\n$/);
});

t.test('SIGTERM: stops accepting, lets open connections finish, exits 0', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const { socketPath, ca } = await workloadApi(t, [{ spiffeId: SPIFFE_ID }]);
  const workload = await echoServer(t);
  const config = await proxyConfig(t, { socketPath, workloadPort: workload.port, extra: { proxy: { shutdownGrace: '60s' } } });
  const proxy = runDevProxy(t, executable, renderProxyEnv(config, { workloadName: 'web-1', trustAnchorsPem: ca.bundlePem }));
  await proxy.waitForLine(/Inbound interface on/);

  const open: Socket = await new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: config.proxy.inboundPort }, () => resolve(socket));
    socket.on('error', reject);
  });
  open.setEncoding('utf8');
  proxy.child.kill('SIGTERM');
  await proxy.waitForLine(/draining/);
  // The log line comes just before the listener closes; a connection squeezed in between is reset.
  const refused = await waitFor('new connections to be refused', () =>
    exchange(config.proxy.inboundPort, 'late').then(
      () => undefined,
      (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? true : undefined),
    ),
  );
  t.ok(refused, 'the listener is closed');

  const reply = new Promise<string>((resolve) => open.once('data', resolve));
  open.write('still here');
  t.equal(await reply, 'still here', 'an open connection keeps working while draining');
  t.equal(proxy.child.exitCode, null, 'the proxy waits for it');
  open.end();
  const result = await proxy.child;
  t.equal(result.exitCode, 0);
});

t.test('SIGTERM: connections still open after the grace period are closed and the proxy exits 0', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const { socketPath, ca } = await workloadApi(t, [{ spiffeId: SPIFFE_ID }]);
  const workload = await echoServer(t);
  const config = await proxyConfig(t, { socketPath, workloadPort: workload.port, extra: { proxy: { shutdownGrace: '300ms' } } });
  const proxy = runDevProxy(t, executable, renderProxyEnv(config, { workloadName: 'web-1', trustAnchorsPem: ca.bundlePem }));
  await proxy.waitForLine(/Inbound interface on/);
  const open: Socket = await new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: config.proxy.inboundPort }, () => resolve(socket));
    socket.on('error', reject);
  });
  t.teardown(() => open.destroy());
  const closed = new Promise<void>((resolve) => open.on('close', () => resolve()));
  proxy.child.kill('SIGTERM');
  t.equal((await proxy.child).exitCode, 0);
  await closed;
  t.ok(proxy.lines.some((l) => /grace period elapsed/.test(l)));
});

t.test('outbound marker names the original destination of a redirected connection', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const ns = await createNetns(t, 'devproxy');
  // A route (with a source address) is all the connect needs before nat OUTPUT redirects it; nothing listens at 198.18.7.1.
  await ns.exec(['ip', 'addr', 'add', '198.18.7.2/32', 'dev', 'lo']);
  await ns.exec(['ip', 'route', 'add', '198.18.7.0/24', 'dev', 'lo', 'src', '198.18.7.2']);
  const { socketPath, ca } = await workloadApi(t, [{ spiffeId: SPIFFE_ID }]);
  const config = await proxyConfig(t, { socketPath });
  await ns.exec(['iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '198.18.7.1', '--dport', '80', '-j', 'REDIRECT', '--to-ports', String(config.proxy.outboundPort)]);
  const proxy = runDevProxy(t, executable, renderProxyEnv(config, { workloadName: 'web-1', trustAnchorsPem: ca.bundlePem }), ns.prefix);
  await proxy.waitForLine(/Outbound interface on/);
  const client = `const s = require('net').connect(80, '198.18.7.1'); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => process.stdout.write(d)); s.on('error', (e) => { console.error(e.message); process.exit(1); }); setTimeout(() => process.exit(2), 5000).unref();`;
  const marker = await waitFor('the marker through the redirect', async () => (await ns.exec([process.execPath, '-e', client])) || undefined);
  t.equal(marker, 'mesh-dev-proxy outbound 198.18.7.1:80');
});
