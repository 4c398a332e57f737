/** The individual checks against real servers: kubelet's httpGet rules, HTTPS, and the exec account rules. */
import t from 'tap';
import { DevCa } from '../../../src/dev/ca.ts';
import { resolveExecAccount } from '../../../src/probes/exec.ts';
import { grpcCheck } from '../../../src/probes/grpc.ts';
import { httpGetCheck } from '../../../src/probes/http.ts';
import { tcpSocketCheck } from '../../../src/probes/tcp.ts';
import { blackHole, grpcHealthServer, httpWorkload } from '../../helpers/workloads.ts';
import { SKIP_WITHOUT_SETUP } from '../../helpers/host.ts';

const context = (timeoutMs = 2000) => ({ timeoutMs, signal: new AbortController().signal });
const target = (port: number, path: string, extra: Partial<Parameters<typeof httpGetCheck>[0]> = {}) => ({ scheme: 'HTTP' as const, host: '127.0.0.1', port, path, headers: [], ...extra });

t.test('httpGet: 2xx and 3xx succeed, 4xx and 5xx fail', async (t) => {
  const web = await httpWorkload(t);
  for (const [status, ok] of [[200, true], [204, true], [304, true], [399, true], [404, false], [500, false], [503, false]] as const) {
    web.status = status;
    const result = await httpGetCheck(target(web.port, '/healthz'), context());
    t.equal(result.ok, ok, `${status}`);
    t.match(result.message, new RegExp(`^GET http://127\\.0\\.0\\.1:${web.port}/healthz: ${status} after \\d+ ms$`));
  }
});

t.test('httpGet: redirects are followed on the same host only, at most 10', async (t) => {
  const web = await httpWorkload(t);
  const redirect = (location: string) => (_req: unknown, res: import('node:http').ServerResponse) => {
    res.writeHead(302, { location });
    res.end();
  };
  web.routes.set('/moved', redirect('/down'));
  web.routes.set('/down', (_req, res) => {
    res.writeHead(503);
    res.end();
  });
  web.routes.set('/away', redirect('http://198.51.100.7:9/elsewhere'));
  web.routes.set('/loop', redirect('/loop'));

  const moved = await httpGetCheck(target(web.port, '/moved'), context());
  t.equal(moved.ok, false, 'the redirect on the same host was followed to a 503');
  t.match(moved.message, /: 503 \(via http:\/\/127\.0\.0\.1:\d+\/down\) after \d+ ms$/);

  const away = await httpGetCheck(target(web.port, '/away'), context());
  t.equal(away.ok, true, 'a redirect to another host is not followed; the 3xx is the answer');
  t.match(away.message, /302 redirect to another host \(198\.51\.100\.7:9\), not followed/);
  t.notOk(web.paths.includes('/elsewhere'));

  const loop = await httpGetCheck(target(web.port, '/loop'), context());
  t.equal(loop.ok, false);
  t.match(loop.message, /stopped after 10 redirects/);
  t.equal(web.paths.filter((p) => p === '/loop').length, 10);
});

t.test('httpGet: headers are sent (Host may be overridden), HTTPS is not verified', async (t) => {
  const web = await httpWorkload(t);
  await httpGetCheck(target(web.port, '/', { headers: [{ name: 'Host', value: 'web.example' }, { name: 'X-Probe', value: 'yes' }] }), context());
  t.equal(web.headers[0]?.host, 'web.example');
  t.equal(web.headers[0]?.['x-probe'], 'yes');

  const ca = await DevCa.create({ trustDomain: 'probes.test' });
  const leaf = await ca.issueSvid({ spiffeId: 'spiffe://probes.test/web', ttlMs: 3_600_000 });
  const secure = await httpWorkload(t, { tls: { cert: leaf.chain.join(''), key: leaf.keyPem } });
  const result = await httpGetCheck(target(secure.port, '/healthz', { scheme: 'HTTPS' }), context());
  t.equal(result.ok, true, result.message);
  t.match(result.message, /^GET https:\/\/127\.0\.0\.1:\d+\/healthz: 200 after/);
});

t.test('a check that hangs is cut at its timeout; a cancelled check ends at once', async (t) => {
  const hole = await blackHole(t);
  const http = await httpGetCheck(target(hole.port, '/'), context(300));
  t.match(http.message, /no answer within 0\.3 s \(timeoutSeconds\)$/);
  const grpc = await grpcCheck({ host: '127.0.0.1', port: hole.port, service: '' }, context(300));
  t.equal(grpc.ok, false);
  t.match(grpc.message, /no answer within 0\.3 s/);
  const abort = new AbortController();
  const pending = tcpSocketCheck({ host: '198.51.100.7', port: 9 }, { timeoutMs: 60_000, signal: abort.signal });
  abort.abort();
  t.match((await pending).message, /cancelled$/);
});

t.test('grpc: a server without the health service', async (t) => {
  const server = await grpcHealthServer(t);
  const ok = await grpcCheck({ host: '127.0.0.1', port: server.port, service: '' }, context());
  t.equal(ok.ok, true);
  const web = await httpWorkload(t);
  const notGrpc = await grpcCheck({ host: '127.0.0.1', port: web.port, service: '' }, context());
  t.equal(notGrpc.ok, false, notGrpc.message);
});

t.test('exec account: never root, never the proxy user or group', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const proxy = { user: 'meshproxy', group: 'meshproxy' };
  const nobody = await resolveExecAccount('nobody', proxy);
  t.not(nobody.uid, 0);
  await t.rejects(resolveExecAccount('root', proxy), /^probes\.execUser: got "root"; resolves to uid 0 \(root\); probes\.execUser must name an unprivileged account/);
  await t.rejects(resolveExecAccount('meshproxy', proxy), /shares the proxy's uid or gid \(meshproxy\/meshproxy\), whose traffic bypasses the mesh and which can fetch the workload's SVID/);
  await t.rejects(resolveExecAccount('nobody', { user: 'meshproxy', group: 'nogroup' }), /shares the proxy's uid or gid/, 'a primary group equal to the proxy group is refused too');
  await t.rejects(resolveExecAccount('no-such-user-mh', proxy), /user "no-such-user-mh" does not exist on this host; create it or set probes\.execUser/);
});
