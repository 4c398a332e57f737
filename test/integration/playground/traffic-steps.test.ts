/**
 * The playground's traffic steps: one bounded connection (src/dev/connection-probe.ts) run
 * as the demo runs it, against real listeners on loopback that answer, close, hold the
 * connection or are not there, and the words the demo says for what was seen. The words
 * follow the observation: the source address the workload reports, whether an outbound
 * connection to a closed port was accepted, answered or held.
 */
import t from 'tap';
import { execa } from 'execa';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { CONNECTION_PROBE, parseConnectionResult, type ConnectionResult, type ConnectionTarget } from '../../../src/dev/connection-probe.ts';
import { inboundVerdict, outboundVerdict } from '../../../src/dev/playground.ts';
import { freePort } from '../../helpers/tmp.ts';

const BOUND_MS = 1_500;

async function probe(target: Omit<ConnectionTarget, 'boundMs'>): Promise<ConnectionResult> {
  const res = await execa(process.execPath, ['-e', CONNECTION_PROBE, JSON.stringify({ ...target, boundMs: BOUND_MS })], { reject: false, timeout: 30_000 });
  t.equal(res.exitCode, 0, 'the probe reports and exits 0 whatever it saw');
  return parseConnectionResult(String(res.stdout), `exit ${res.exitCode}: ${res.stderr}`);
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A TCP listener on 127.0.0.1 doing `onConnection` with each connection; closed at teardown. */
async function listener(t: Teardown, onConnection: (socket: Socket) => void): Promise<number> {
  const held: Socket[] = [];
  const server: Server = createServer((socket) => {
    held.push(socket);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of held) socket.destroy();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

t.test('outbound: a proxy that accepts and never answers (linkerd2-proxy without its destination service)', async (t) => {
  const port = await listener(t, () => undefined);
  const result = await probe({ host: '127.0.0.1', port });
  t.same(result, { outcome: 'silent' });
  const verdict = outboundVerdict(result, BOUND_MS);
  t.match(verdict.summary, /^not checked: the proxy took the connection and held it 1\.5 s without an answer, as linkerd2-proxy does while it waits for the Linkerd destination service, which the playground does not run$/);
  t.match(verdict.explanation, /nothing listens on 198\.18\.99\.1:9, yet the connection was accepted, so iptables sent it to the proxy, which held it 1\.5 s without a byte back\. linkerd2-proxy does that while it waits for the Linkerd destination service/);
});

t.test('outbound: the development proxy answers with the original destination', async (t) => {
  const port = await listener(t, (socket) => socket.end('mesh-dev-proxy outbound 198.18.99.1:9\n'));
  const result = await probe({ host: '127.0.0.1', port });
  t.same(result, { outcome: 'answer', text: 'mesh-dev-proxy outbound 198.18.99.1:9\n' });
  t.same(outboundVerdict(result, BOUND_MS).summary, 'yes, through the proxy');
  t.match(outboundVerdict(result, BOUND_MS).explanation, /it read the original destination 198\.18\.99\.1:9/);
});

t.test('outbound: accepted, then closed without a byte (a proxy whose destination refused it)', async (t) => {
  const port = await listener(t, (socket) => socket.end());
  const result = await probe({ host: '127.0.0.1', port });
  t.same(result, { outcome: 'closed' });
  t.match(outboundVerdict(result, BOUND_MS).summary, /^yes, redirected \(accepted although nothing listens on 198\.18\.99\.1:9, then closed\)$/);
  const reset = await probe({ host: '127.0.0.1', port: await listener(t, (socket) => socket.resetAndDestroy()) });
  t.match(reset, { outcome: 'closed', code: 'ECONNRESET' }, 'a reset is a close without an answer');
});

t.test('outbound: refused means the connection left the VM unredirected', async (t) => {
  const result = await probe({ host: '127.0.0.1', port: await freePort() });
  t.same(result, { outcome: 'refused', code: 'ECONNREFUSED' });
  t.match(outboundVerdict(result, BOUND_MS).summary, /^NO \(198\.18\.99\.1:9 refused it: not redirected\)$/);
});

t.test('no handshake within the bound, or another failure', async (t) => {
  // Not provoked here (tests send traffic only to loopback); the demo's own runs cover it.
  t.match(outboundVerdict({ outcome: 'no-connection' }, BOUND_MS).summary, /^NO \(no connection within 1\.5 s\)$/);
  t.match(inboundVerdict({ outcome: 'error', code: 'ENETUNREACH' }, BOUND_MS).summary, /^NO \(failed: ENETUNREACH\)$/);
});

t.test('inbound: the words follow the source address the workload reports', async (t) => {
  const server = createHttpServer((req, res) => res.end(`hello from the VM workload; your connection came from ${req.socket.remoteAddress}\n`));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const result = await probe({ host: '127.0.0.1', port: (server.address() as { port: number }).port, path: '/' });
  t.match(result, { outcome: 'answer', status: 200, text: /your connection came from 127\.0\.0\.1/ });
  const loopback = inboundVerdict(result, BOUND_MS);
  t.match(loopback.summary, /^yes, through the proxy \(the workload saw 127\.0\.0\.1, not the client's 198\.18\.99\.1\)$/);
  t.match(loopback.explanation, /which opened its own over loopback$/, 'the development proxy forwards over loopback');

  const fromVm = inboundVerdict({ outcome: 'answer', status: 200, text: 'hello from the VM workload; your connection came from 198.18.99.2\n' }, BOUND_MS);
  t.match(fromVm.summary, /^yes, through the proxy \(the workload saw 198\.18\.99\.2/);
  t.match(fromVm.explanation, /the workload sees 198\.18\.99\.2, not the client's 198\.18\.99\.1: .* which opened its own to the workload's address, from the VM's own$/, 'linkerd2-proxy connects from the VM address');
  t.notMatch(fromVm.explanation, /127\.0\.0\.1/);

  const direct = inboundVerdict({ outcome: 'answer', status: 200, text: 'hello from the VM workload; your connection came from 198.18.99.1\n' }, BOUND_MS);
  t.match(direct.summary, /^NO \(the workload saw the client's own address, 198\.18\.99\.1\)$/);

  const foreign = inboundVerdict({ outcome: 'answer', status: 403, text: 'forbidden by policy\n' }, BOUND_MS);
  t.match(foreign.summary, /^not checked: HTTP 403 "forbidden by policy" came back, not the workload's greeting$/);
});

t.test('inbound: held without an answer', async (t) => {
  const port = await listener(t, () => undefined);
  const result = await probe({ host: '127.0.0.1', port, path: '/' });
  t.same(result, { outcome: 'silent' });
  t.match(inboundVerdict(result, BOUND_MS).summary, /^not checked: accepted the connection and sent nothing back within 1\.5 s$/);
});

t.test('a probe that did not report is an error saying why', async (t) => {
  t.same(parseConnectionResult('', 'no report within 20 s'), { outcome: 'error', code: 'no report within 20 s' });
  t.same(parseConnectionResult('{"outcome":"silent"}', 'unused'), { outcome: 'silent' });
});
