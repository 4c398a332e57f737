import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { loadConfig } from '../../../src/config/load.ts';
import { DevCa } from '../../../src/dev/ca.ts';
import { DevWorkloadApiServer } from '../../../src/dev/workload-api/server.ts';
import { IdentityComponent } from '../../../src/identity/component.ts';
import { workloadApiService } from '../../../src/identity/proto.ts';
import { workloadApiServes } from '../../../src/identity/workload-api-client.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { tempDir } from '../../helpers/tmp.ts';
import { waitForState } from './client-suite.ts';

const TD = 'root.linkerd.cluster.local';
const ID = `spiffe://${TD}/vm/web`;
const STEP = 15_000;

async function serve(t: Test, socketPath: string, ca: DevCa, identities = [{ spiffeId: ID }]): Promise<DevWorkloadApiServer> {
  const server = new DevWorkloadApiServer({ socketPath, ca, identities, ttlMs: 5000, rotateEveryMs: 200, log: silentLogger() });
  await server.start();
  t.teardown(() => server.stop());
  return server;
}

function identityFor(t: Test, dir: string, sets: string[]): IdentityComponent {
  const { config } = loadConfig({
    defaultPath: join(dir, 'absent.json'),
    env: {},
    sets: [`identity.spiffeId=${ID}`, `identity.trustAnchorsFile=${join(dir, 'anchors.pem')}`, `identity.workloadApiSocket=unix://${join(dir, 'api.sock')}`, 'identity.expiryMargin=1s', ...sets],
  });
  const identity = new IdentityComponent({ config, log: silentLogger(), registry: new Registry(), backoff: { baseMs: 50, maxMs: 500 } });
  t.teardown(() => identity.stop());
  return identity;
}

t.test('a missing trust anchors file is a clear Degraded state (retried), repaired by writing the file', async (t) => {
  const dir = tempDir(t);
  const ca = await DevCa.create({ trustDomain: TD });
  await serve(t, join(dir, 'api.sock'), ca);
  const identity = identityFor(t, dir, []);
  await identity.start();
  const failed = await waitForState(identity, 'Degraded', (s) => s.phase === 'Degraded', STEP);
  t.equal(failed.message, `trust anchors file ${join(dir, 'anchors.pem')} does not exist; write the mesh trust anchor PEM there or set identity.trustAnchorsFile`);
  t.equal(identity.current(), undefined);

  writeFileSync(join(dir, 'anchors.pem'), ca.bundlePem);
  await waitForState(identity, 'Ready after the file appears', (s) => s.phase === 'Ready', STEP);
});

t.test('a trust anchors file without certificates names the file', async (t) => {
  const dir = tempDir(t);
  const ca = await DevCa.create({ trustDomain: TD });
  await serve(t, join(dir, 'api.sock'), ca);
  writeFileSync(join(dir, 'anchors.pem'), 'not a certificate\n');
  const identity = identityFor(t, dir, []);
  await identity.start();
  const failed = await waitForState(identity, 'Degraded', (s) => s.phase === 'Degraded', STEP);
  t.match(failed.message, `trust anchors ${join(dir, 'anchors.pem')}: no PEM certificate found`);
});

t.test('an unusable Workload API address is reported, not thrown', async (t) => {
  const dir = tempDir(t);
  // The loader refuses it (test/unit/config/load.test.ts); a config built another way still must not crash the component.
  t.throws(() => identityFor(t, dir, ['identity.workloadApiSocket=tcp://127.0.0.1:8081']), /identity\.workloadApiSocket \(--set\): got "tcp:\/\/127\.0\.0\.1:8081"; it is not a Unix socket/);
  const { config } = loadConfig({ defaultPath: join(dir, 'absent.json'), env: {}, sets: [`identity.spiffeId=${ID}`, `identity.trustAnchorsFile=${join(dir, 'anchors.pem')}`] });
  const identity = new IdentityComponent({ config: { ...config, identity: { ...config.identity, workloadApiSocket: 'tcp://127.0.0.1:8081' } }, log: silentLogger(), registry: new Registry(), backoff: { baseMs: 50, maxMs: 500 } });
  t.teardown(() => identity.stop());
  await identity.start();
  const state = identity.state();
  t.equal(state.phase, 'Failed');
  t.match(state.message, /"tcp:\/\/127.0.0.1:8081" is not a Unix socket.*\(identity.workloadApiSocket\)/);
});

t.test('waiting for the socket says so, and a server appearing later is picked up', async (t) => {
  const dir = tempDir(t);
  const ca = await DevCa.create({ trustDomain: TD });
  writeFileSync(join(dir, 'anchors.pem'), ca.bundlePem);
  const identity = identityFor(t, dir, []);
  await identity.start();
  const waiting = await waitForState(identity, 'waiting for the socket', (s) => s.lastError !== undefined, STEP);
  t.equal(waiting.phase, 'Pending');
  t.equal(waiting.message, `waiting for the Workload API socket unix://${join(dir, 'api.sock')}; is spire-agent running?`);
  t.match(waiting.lastError, 'does not exist');
  const svid = identity.waitForSvid();
  await serve(t, join(dir, 'api.sock'), ca);
  t.equal((await svid).spiffeId, ID);
});

t.test('an SVID set without the configured ID says which IDs were offered', async (t) => {
  const dir = tempDir(t);
  const ca = await DevCa.create({ trustDomain: TD });
  writeFileSync(join(dir, 'anchors.pem'), ca.bundlePem);
  await serve(t, join(dir, 'api.sock'), ca, [{ spiffeId: `spiffe://${TD}/vm/db` }, { spiffeId: `spiffe://${TD}/vm/cache` }]);
  const identity = identityFor(t, dir, []);
  await identity.start();
  const failed = await waitForState(identity, 'Degraded', (s) => s.phase === 'Degraded', STEP);
  t.match(failed.message, `the Workload API offers spiffe://${TD}/vm/db, spiffe://${TD}/vm/cache but not ${ID}`);
});

t.test('the SVID is picked by SPIFFE ID among several', async (t) => {
  const dir = tempDir(t);
  const ca = await DevCa.create({ trustDomain: TD });
  writeFileSync(join(dir, 'anchors.pem'), ca.bundlePem);
  await serve(t, join(dir, 'api.sock'), ca, [{ spiffeId: `spiffe://${TD}/vm/db` }, { spiffeId: ID }]);
  const identity = identityFor(t, dir, []);
  await identity.start();
  t.equal((await identity.waitForSvid()).spiffeId, ID);
});

t.test('an entry deleted while streaming takes the identity away', async (t) => {
  const dir = tempDir(t);
  const ca = await DevCa.create({ trustDomain: TD });
  writeFileSync(join(dir, 'anchors.pem'), ca.bundlePem);
  const server = await serve(t, join(dir, 'api.sock'), ca);
  const identity = identityFor(t, dir, []);
  await identity.start();
  await identity.waitForSvid();
  await server.setIdentities([]);
  const gone = await waitForState(identity, 'PermissionDenied', (s) => /PermissionDenied/.test(s.message), STEP);
  t.equal(gone.ready, false);
  t.equal(identity.current(), undefined);
  const group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
  t.match(gone.message, `with selector unix:group:${group} `, "the entry to create names the harness's group by name (a gid differs between hosts)");
});

t.test('waitForSvid gives up when its signal aborts', async (t) => {
  const dir = tempDir(t);
  const identity = identityFor(t, dir, []);
  await identity.start();
  const controller = new AbortController();
  const waiting = identity.waitForSvid(controller.signal);
  controller.abort(new Error('shutting down'));
  await t.rejects(waiting, /shutting down/);
});

t.test('update() with a new socket follows the new server', async (t) => {
  const dir = tempDir(t);
  const ca = await DevCa.create({ trustDomain: TD });
  writeFileSync(join(dir, 'anchors.pem'), ca.bundlePem);
  const other = join(dir, 'other.sock');
  await serve(t, other, ca);
  const identity = identityFor(t, dir, []);
  await identity.start();
  await waitForState(identity, 'waiting', (s) => s.lastError !== undefined, STEP);
  const { config } = loadConfig({
    defaultPath: join(dir, 'absent.json'),
    env: {},
    sets: [`identity.spiffeId=${ID}`, `identity.trustAnchorsFile=${join(dir, 'anchors.pem')}`, `identity.workloadApiSocket=${other}`, 'identity.expiryMargin=1s'],
  });
  await (await identity.prepare(config)).commit();
  const svid = await identity.waitForSvid();
  t.equal(svid.spiffeId, ID);
  t.equal(identity.state().detail?.['socket'], other);
});

t.test('the development server requires the security header, like SPIRE', async (t) => {
  const dir = tempDir(t);
  const ca = await DevCa.create({ trustDomain: TD });
  const socket = join(dir, 'api.sock');
  await serve(t, socket, ca);
  const Client = workloadApiService();
  const client = new Client(`unix://${socket}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const code = await new Promise<number>((resolve) => {
    const call = (client as unknown as { FetchX509SVID(req: object): grpc.ClientReadableStream<unknown> }).FetchX509SVID({});
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => resolve(s.code));
  });
  t.equal(code, grpc.status.INVALID_ARGUMENT);
  t.equal(await workloadApiServes(socket), true, 'any answer means it serves');
  t.equal(await workloadApiServes(join(dir, 'absent.sock')), false);
});

t.test('FetchX509Bundles serves the trust domain bundle', async (t) => {
  const dir = tempDir(t);
  const ca = await DevCa.create({ trustDomain: TD });
  const socket = join(dir, 'api.sock');
  await serve(t, socket, ca);
  const Client = workloadApiService();
  const client = new Client(`unix://${socket}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const metadata = new grpc.Metadata();
  metadata.set('workload.spiffe.io', 'true');
  const bundles = await new Promise<Record<string, Buffer>>((resolve, reject) => {
    const call = (client as unknown as { FetchX509Bundles(req: object, md: grpc.Metadata): grpc.ClientReadableStream<{ bundles: Record<string, Buffer> }> }).FetchX509Bundles({}, metadata);
    call.on('data', (m) => {
      resolve(m.bundles);
      call.cancel();
    });
    call.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? undefined : reject(err)));
  });
  t.ok(bundles[`spiffe://${TD}`]?.equals(ca.bundleDer()));
});
