/**
 * The identity client suite, run unchanged against the development Workload API server
 * and against real SPIRE: whatever the harness relies on must hold for both.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { Registry, type Counter, type Gauge } from 'prom-client';
import type { Test } from 'tap';
import { loadConfig } from '../../../src/config/load.ts';
import type { ComponentState } from '../../../src/component/component.ts';
import { IdentityComponent } from '../../../src/identity/component.ts';
import { DevCa } from '../../../src/dev/ca.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { tempDir } from '../../helpers/tmp.ts';

/** One isolated Workload API endpoint (its own agent or dev server) serving one SPIFFE ID. */
export interface Workload {
  socketPath: string;
  spiffeId: string;
  /** PEM file of the anchors the SVIDs chain to. */
  anchorsFile: string;
  /** Makes the endpoint issue spiffeId to the test process (a registration entry). */
  register(): Promise<void>;
  /** The endpoint dies without cleaning up (SIGKILL). */
  kill(): Promise<void>;
  /** The endpoint comes back on the same socket path. */
  restart(): Promise<void>;
}

export interface Backend {
  name: string;
  /**
   * An endpoint for one subtest. Only `exclusive` ones may be killed or registered later;
   * a backend may hand the same registered, non-exclusive endpoint to several subtests.
   */
  workload(t: Test, options: { registered: boolean; exclusive: boolean }): Promise<Workload>;
  /** Generous upper bound for one step (an SVID to arrive, a rotation). */
  stepTimeoutMs: number;
}

export interface Harnessed {
  identity: IdentityComponent;
  registry: Registry;
}

/** An IdentityComponent on `workload`, stopped when the test ends. */
export async function startIdentity(t: Test, workload: Workload, overrides: { anchorsFile?: string; expiryMargin?: string; address?: string } = {}): Promise<Harnessed> {
  const dir = tempDir(t);
  const { config } = loadConfig({
    defaultPath: join(dir, 'absent.json'),
    env: {},
    sets: [
      `identity.spiffeId=${workload.spiffeId}`,
      `identity.trustAnchorsFile=${overrides.anchorsFile ?? workload.anchorsFile}`,
      `identity.workloadApiSocket=${overrides.address ?? `unix://${workload.socketPath}`}`,
      `identity.expiryMargin=${overrides.expiryMargin ?? '2s'}`,
    ],
  });
  const registry = new Registry();
  const identity = new IdentityComponent({ config, log: silentLogger(), registry, backoff: { baseMs: 50, maxMs: 1000 } });
  await identity.start();
  t.teardown(() => identity.stop());
  return { identity, registry };
}

/** Resolves with the first state (current or next) that satisfies `predicate`. */
export function waitForState(identity: IdentityComponent, what: string, predicate: (s: ComponentState) => boolean, timeoutMs: number): Promise<ComponentState> {
  return new Promise((resolve, reject) => {
    const check = (state: ComponentState): void => {
      if (!predicate(state)) return;
      cleanup();
      resolve(state);
    };
    const timer = setTimeout(() => {
      cleanup();
      const s = identity.state();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; identity is ${s.phase}: ${s.message} (${s.lastError ?? 'no error'})`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      identity.off('change', check);
    };
    identity.on('change', check);
    check(identity.state());
  });
}

async function metricValue(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name) as Counter | Gauge | undefined;
  const value = (await metric?.get())?.values[0]?.value;
  if (value === undefined) throw new Error(`metric ${name} has no value`);
  return value;
}

export function clientSuite(t: Test, backend: Backend): void {
  const step = backend.stepTimeoutMs;

  t.test(`${backend.name}: reaches a valid SVID chaining to the trust anchor and follows rotations`, async (t) => {
    const workload = await backend.workload(t, { registered: true, exclusive: false });
    const { identity, registry } = await startIdentity(t, workload);
    const first = await identity.waitForSvid();
    t.equal(first.spiffeId, workload.spiffeId);
    t.equal(identity.state().phase, 'Ready');
    t.equal(identity.state().ready, true);
    t.ok(first.notAfter > new Date(), 'not expired');

    // Independent of verify.ts: the leaf names the ID and the chain ends at the anchor.
    const anchor = new X509Certificate(readFileSync(workload.anchorsFile));
    const chain = first.svid.chain;
    t.match(chain[0]!.subjectAltName, workload.spiffeId);
    t.ok(chain[chain.length - 1]!.verify(anchor.publicKey), 'last certificate in the chain is signed by the trust anchor');

    const serials = new Set([first.serial]);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`saw ${serials.size - 1} rotations in ${3 * step} ms`)), 3 * step);
      identity.on('svid', function onSvid(svid) {
        serials.add(svid.serial);
        if (serials.size >= 3) {
          clearTimeout(timer);
          identity.off('svid', onSvid);
          resolve();
        }
      });
    });
    t.ok(serials.size >= 3, 'two rotations observed');
    t.ok((await metricValue(registry, 'mesh_harness_svid_rotations_total')) >= 2, 'rotations counted');
    const now = identity.current();
    t.ok(now);
    t.equal(await metricValue(registry, 'mesh_harness_svid_expiry_timestamp_seconds'), now!.notAfter.getTime() / 1000);
    const detail = identity.state().detail!;
    t.equal(detail['serial'], now!.serial);
    t.type(detail['expiresInSeconds'], 'number');
  });

  t.test(`${backend.name}: PermissionDenied until the entry exists, then an SVID without a restart`, async (t) => {
    const workload = await backend.workload(t, { registered: false, exclusive: true });
    const { identity } = await startIdentity(t, workload);
    const waiting = await waitForState(identity, 'PermissionDenied', (s) => /PermissionDenied/.test(s.message), step);
    t.equal(waiting.phase, 'Pending');
    t.equal(waiting.ready, false);
    t.match(waiting.message, /create a registration entry for spiffe:\/\//);
    t.equal(identity.current(), undefined);

    await workload.register();
    const svid = await identity.waitForSvid();
    t.equal(svid.spiffeId, workload.spiffeId);
    t.equal(identity.state().phase, 'Ready');
  });

  t.test(`${backend.name}: agent killed and restarted: readiness drops, then recovers by itself`, async (t) => {
    const workload = await backend.workload(t, { registered: true, exclusive: true });
    const { identity } = await startIdentity(t, workload, { address: workload.socketPath });
    await waitForState(identity, 'Ready', (s) => s.phase === 'Ready', step);

    await workload.kill();
    const down = await waitForState(identity, 'readiness to drop', (s) => !s.ready, step);
    t.equal(down.phase, 'Degraded', 'the held SVID is still valid, but nothing renews it');
    t.match(down.message, /stream lost/);
    t.ok(identity.current(), 'the SVID already held stays available until it expires');

    await workload.restart();
    const up = await waitForState(identity, 'readiness to recover', (s) => s.ready, step);
    t.equal(up.phase, 'Ready');
    t.equal(up.detail?.['connected'], true);
  });

  t.test(`${backend.name}: an SVID that does not chain to the configured anchors is rejected`, async (t) => {
    const workload = await backend.workload(t, { registered: true, exclusive: false });
    const stranger = await DevCa.create({ trustDomain: 'unrelated.example', commonName: 'unrelated root' });
    const anchorsFile = join(tempDir(t), 'wrong-anchors.pem');
    writeFileSync(anchorsFile, stranger.bundlePem);
    const { identity, registry } = await startIdentity(t, workload, { anchorsFile });
    const failed = await waitForState(identity, 'Degraded', (s) => s.phase === 'Degraded', step);
    t.equal(failed.ready, false);
    t.match(failed.lastError, `does not verify against any trust anchor in ${anchorsFile}`);
    t.match(failed.lastError, /issuer .*CN=/);
    t.match(failed.lastError, /CN=unrelated root/);
    t.equal(identity.current(), undefined);
    t.equal(await metricValue(registry, 'mesh_harness_svid_expiry_timestamp_seconds'), 0);
  });

  t.test(`${backend.name}: an SVID expiring within identity.expiryMargin is not ready`, async (t) => {
    const workload = await backend.workload(t, { registered: true, exclusive: false });
    const { identity } = await startIdentity(t, workload, { expiryMargin: '1h' });
    const degraded = await waitForState(identity, 'Degraded', (s) => s.phase === 'Degraded', step);
    t.equal(degraded.ready, false);
    t.match(degraded.message, /within identity.expiryMargin \(1h\)/);
    t.ok(identity.current(), 'the SVID is valid, only too close to expiry');
  });
}
