import t, { type Test } from 'tap';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../../src/config/load.ts';
import type { HarnessConfig } from '../../../src/config/types.ts';
import { joinTokenFileProblem, prepareSpireAgent, renderSpireAgentConfig, spireAgentChildSpec, spireAgentConfigProblems } from '../../../src/identity/spire-agent.ts';
import { tempDir } from '../../helpers/tmp.ts';

const testdata = join(dirname(fileURLToPath(import.meta.url)), 'testdata');

function config(dir: string, sets: string[] = []): HarnessConfig {
  return loadConfig({
    defaultPath: join(dir, 'absent.json'),
    env: {},
    sets: [
      'spire.mode=managed',
      'spire.serverAddress=spire-server.spire.svc',
      'spire.serverPort=8081',
      'spire.trustBundleFile=/etc/mesh-harness/trust-anchors.pem',
      'spire.joinTokenFile=/etc/mesh-harness/join-token',
      'spire.dataDir=/var/lib/mesh-harness/spire-agent',
      ...sets,
    ],
  }).config;
}

/** Compares with testdata/<name>; UPDATE_GOLDEN=1 rewrites it (review the diff). */
function golden(t: Test, name: string, actual: string): void {
  const file = join(testdata, name);
  if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(file, actual);
  t.equal(actual, readFileSync(file, 'utf8'), `matches testdata/${name}`);
}

t.test('rendered agent configuration: join token, unix attestor, keys on disk', async (t) => {
  const c = config(tempDir(t));
  golden(t, 'spire-agent-join-token.conf', renderSpireAgentConfig(c.spire, '/run/spire/agent/api.sock'));
});

t.test('rendered agent configuration without a join token file (agent already attested)', async (t) => {
  const c = config(tempDir(t), ['spire.joinTokenFile=', 'spire.logLevel=debug', 'spire.trustDomain=example.org', 'spire.serverPort=443']);
  golden(t, 'spire-agent-no-token.conf', renderSpireAgentConfig(c.spire, '/run/mesh/api.sock'));
});

t.test('rendering refuses to guess the server address or the bootstrap bundle', async (t) => {
  const c = config(tempDir(t));
  const problems = spireAgentConfigProblems({ ...c.spire, serverAddress: '', trustBundleFile: '' });
  t.equal(problems.length, 2);
  t.match(problems[0], /^spire.serverAddress: got ""; required when spire.mode is "managed"/);
  t.match(problems[1], /^spire.trustBundleFile: got ""; required when spire.mode is "managed": .*spire-server bundle show/);
  t.throws(() => config(tempDir(t), ['spire.serverAddress=']), { name: 'ConfigError', message: /spire\.serverAddress: got ""/ }, 'the loader applies the same rule');
  t.throws(() => renderSpireAgentConfig({ ...c.spire, serverAddress: '' }, '/run/a.sock'), /spire.serverAddress: got ""/);
});

t.test('values are quoted for HCL', async (t) => {
  const c = config(tempDir(t), ['spire.dataDir=/var/lib/odd "dir"']);
  t.match(renderSpireAgentConfig(c.spire, '/run/a.sock'), 'data_dir          = "/var/lib/odd \\"dir\\""');
});

t.test('the child spec runs spire-agent with the config file and nothing from our environment', async (t) => {
  const c = config(tempDir(t), ['spire.agentBinary=/opt/spire/bin/spire-agent']);
  const spec = spireAgentChildSpec(c, { configFile: '/var/lib/mesh-harness/spire-agent/agent.conf' });
  t.equal(spec.name, 'spire-agent');
  t.equal(spec.command, '/opt/spire/bin/spire-agent');
  t.same(spec.args, ['run', '-config', '/var/lib/mesh-harness/spire-agent/agent.conf']);
  t.same(Object.keys(spec.env), ['PATH']);
  t.equal(spec.uid, undefined, 'runs as root: the unix attestor reads other processes');
});

t.test('a join token file readable by group or others is refused', async (t) => {
  const dir = tempDir(t);
  const token = join(dir, 'join-token');
  writeFileSync(token, 'abc', { mode: 0o600 });
  t.equal(joinTokenFileProblem(token), undefined);
  chmodSync(token, 0o644);
  t.equal(joinTokenFileProblem(token), `join token file ${token} (spire.joinTokenFile) is accessible by group or others (mode 0644); it is a node credential: chmod 600 ${token}`);
  chmodSync(token, 0o640);
  t.match(joinTokenFileProblem(token), /mode 0640/);
  t.match(joinTokenFileProblem(join(dir, 'missing')), /does not exist; write the token from `spire-server token generate` there with mode 0600/);

  const c = config(dir, [`spire.joinTokenFile=${token}`, `spire.dataDir=${join(dir, 'data')}`, `identity.workloadApiSocket=unix://${join(dir, 'run', 'api.sock')}`, 'spire.agentBinary=/bin/true']);
  t.throws(() => prepareSpireAgent(c), /is accessible by group or others \(mode 0640\)/);
  t.notOk(existsSync(join(dir, 'data')), 'nothing written when refusing');
});

t.test('prepareSpireAgent writes the rendered config privately and creates the directories', async (t) => {
  const dir = tempDir(t);
  const token = join(dir, 'join-token');
  writeFileSync(token, 'abc', { mode: 0o600 });
  const socket = join(dir, 'run', 'api.sock');
  const c = config(dir, [`spire.joinTokenFile=${token}`, `spire.dataDir=${join(dir, 'data')}`, `identity.workloadApiSocket=unix://${socket}`, 'spire.agentBinary=true']);
  const spec = prepareSpireAgent(c);
  const file = join(dir, 'data', 'agent.conf');
  t.same(spec.args, ['run', '-config', file]);
  t.match(spec.command, /\/true$/, 'binary resolved on PATH');
  t.equal(readFileSync(file, 'utf8'), renderSpireAgentConfig(c.spire, socket));
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'data')).mode & 0o777, 0o700);
  t.ok(statSync(join(dir, 'run')).isDirectory());

  const own = join(dir, 'own.conf');
  const withOwn = prepareSpireAgent(config(dir, [`spire.agentConfig=${own}`, 'spire.serverAddress=', `spire.dataDir=${join(dir, 'data')}`, `spire.joinTokenFile=${token}`, `identity.workloadApiSocket=unix://${socket}`, 'spire.agentBinary=true']));
  t.same(withOwn.args, ['run', '-config', own], 'an operator config is used as is');
  t.throws(() => prepareSpireAgent(config(dir, ['spire.agentBinary=/nonexistent/spire-agent'])), /spire-agent binary "\/nonexistent\/spire-agent" not found \(spire.agentBinary\)/);
});
