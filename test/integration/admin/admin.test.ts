import t from 'tap';
import { request } from 'node:http';
import { HarnessMetrics } from '../../../src/admin/metrics.ts';
import { loadConfig } from '../../../src/config/load.ts';
import { BaseComponent, type Phase } from '../../../src/component/component.ts';
import { Harness } from '../../../src/harness/daemon.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { freePort, tempDir } from '../../helpers/tmp.ts';

/** A component whose phase the test sets, standing in for a reconciler. */
class SettableComponent extends BaseComponent {
  constructor(name: string) {
    super(name, silentLogger());
  }
  async start(): Promise<void> {
    this.setState('Starting', { message: 'waiting for something' });
  }
  async stop(): Promise<void> {
    this.setState('Stopped', { message: 'stopped' });
  }
  set(phase: Phase, message: string, lastError?: string): void {
    this.setState(phase, { message, lastError });
  }
}

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function startHarness(t: { teardown(fn: () => unknown): void }, components: SettableComponent[]) {
  const dir = tempDir(t);
  const port = await freePort();
  const { config } = loadConfig({ defaultPath: `${dir}/absent.json`, env: {}, sets: [`admin.port=${port}`] });
  const harness = new Harness({ config, log: silentLogger(), metrics: new HarnessMetrics(), components, version: '9.9.9' });
  await harness.start();
  t.teardown(() => harness.stop());
  return { harness, port };
}

t.test('/live answers 200 while /ready explains what is not ready', async (t) => {
  const identity = new SettableComponent('identity');
  const proxy = new SettableComponent('proxy');
  const { port } = await startHarness(t, [identity, proxy]);

  const live = await get(port, '/live');
  t.equal(live.status, 200);

  identity.set('Starting', 'waiting for the Workload API socket', 'connect ENOENT /run/spire/agent/api.sock');
  const notReady = await get(port, '/ready');
  t.equal(notReady.status, 503);
  t.match(notReady.type, /application\/json/);
  const body = JSON.parse(notReady.body) as { ready: boolean; status: string; notReady: Array<{ name: string; message: string; lastError?: string }> };
  t.equal(body.ready, false);
  t.equal(body.status, 'identity: waiting for the Workload API socket');
  t.same(body.notReady.map((c) => c.name), ['identity', 'proxy']);
  t.equal(body.notReady[0]!.lastError, 'connect ENOENT /run/spire/agent/api.sock');

  identity.set('Ready', 'SVID valid');
  proxy.set('Ready', 'proxy ready');
  const ready = await get(port, '/ready');
  t.equal(ready.status, 200);
  t.equal(JSON.parse(ready.body).ready, true);
});

t.test('/status lists every component with phase, since and lastError', async (t) => {
  const identity = new SettableComponent('identity');
  const { port } = await startHarness(t, [identity]);
  identity.set('Failed', 'SVID chain does not verify', 'no trust anchor signed CN=evil');
  const res = await get(port, '/status');
  t.equal(res.status, 200);
  const status = JSON.parse(res.body);
  t.equal(status.version, '9.9.9');
  t.equal(status.ready, false);
  const entry = status.components.find((c: { name: string }) => c.name === 'identity');
  t.equal(entry.phase, 'Failed');
  t.equal(entry.lastError, 'no trust anchor signed CN=evil');
  t.ok(!Number.isNaN(Date.parse(entry.since)), 'since is an ISO timestamp');
  t.equal(status.components.find((c: { name: string }) => c.name === 'config').phase, 'Ready', 'the configuration in force is listed too');
});

t.test('/metrics is Prometheus text with the mesh_harness_ prefix and process metrics', async (t) => {
  const identity = new SettableComponent('identity');
  const { port } = await startHarness(t, [identity]);
  identity.set('Ready', 'ok');
  const res = await get(port, '/metrics');
  t.equal(res.status, 200);
  t.match(res.type, /text\/plain; version=0\.0\.4/);
  t.match(res.body, /^mesh_harness_component_ready\{component="identity"\} 1$/m);
  t.match(res.body, /^mesh_harness_process_resident_memory_bytes \d+/m);
  const names = res.body.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]);
  t.same(names.filter((n) => !n!.startsWith('mesh_harness_')), [], 'every metric carries the prefix');
});

t.test('unknown paths 404 and non-GET methods 405', async (t) => {
  const { port } = await startHarness(t, [new SettableComponent('identity')]);
  t.equal((await get(port, '/nope')).status, 404);
  t.equal((await get(port, '/live', 'POST')).status, 405);
});

t.test('a busy admin port is a clear startup error', async (t) => {
  const { port } = await startHarness(t, [new SettableComponent('a')]);
  const dir = tempDir(t);
  const { config } = loadConfig({ defaultPath: `${dir}/absent.json`, env: {}, sets: [`admin.port=${port}`] });
  const second = new Harness({ config, log: silentLogger(), metrics: new HarnessMetrics(), components: [], version: 'x' });
  await t.rejects(second.start(), /admin port \d+ on 127\.0\.0\.1 is already in use/);
  await second.stop();
});
