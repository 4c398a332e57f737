// `proxy env` prints what `run` would give the proxy; `run` reports every host problem at once.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../../src/config/load.ts';
import { DevCa } from '../../../src/dev/ca.ts';
import { renderProxyEnv } from '../../../src/proxy/env.ts';
import { runInProcess } from '../../helpers/cli-inprocess.ts';
import { tempDir } from '../../helpers/tmp.ts';

const REQUIRED = { identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/web', serverName: 'web.vm.cluster.local' }, proxy: { destinationAddr: 'dst.example:8086' } };

function configFile(dir: string, extra: { identity?: object; proxy?: object; workload?: object }): string {
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify({ ...extra, identity: { ...REQUIRED.identity, ...extra.identity }, proxy: { ...REQUIRED.proxy, ...extra.proxy } }));
  return path;
}

t.test('proxy env prints the environment run renders, sourceable by a shell', async (t) => {
  const dir = tempDir(t, 'mh-config-');
  const ca = await DevCa.create({ trustDomain: 'root.linkerd.cluster.local' });
  const anchors = join(dir, 'anchors.pem');
  writeFileSync(anchors, ca.bundlePem);
  const path = configFile(dir, { identity: { trustAnchorsFile: anchors }, workload: { name: 'web-1', ports: [8080] }, proxy: { extraEnv: { QUOTED: "it's $HOME" } } });
  const result = await runInProcess(['proxy', 'env', '--config', path]);
  t.equal(result.exitCode, 0, result.stderr);
  const envFile = join(dir, 'proxy.env');
  writeFileSync(envFile, result.stdout);
  const sourced = JSON.parse(execFileSync('sh', ['-c', `set -a; . "${envFile}"; exec "${process.execPath}" -e 'console.log(JSON.stringify(process.env))'`], { env: {}, encoding: 'utf8' }));
  const expected = renderProxyEnv(loadConfig({ path, env: {} }).config, { workloadName: '', trustAnchorsPem: ca.bundlePem });
  for (const [key, value] of Object.entries(expected)) t.equal(sourced[key], value, key);
  t.match(sourced.LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS, /^-----BEGIN CERTIFICATE-----/, 'the anchors are read from the file, as run does');
});

t.test('proxy env: unreadable trust anchors and missing fields are configuration errors (78)', async (t) => {
  const dir = tempDir(t, 'mh-config-');
  const missing = await runInProcess(['proxy', 'env', '--config', configFile(dir, { identity: { trustAnchorsFile: join(dir, 'none.pem') } })]);
  t.equal(missing.exitCode, 78);
  t.match(missing.stderr, /identity\.trustAnchorsFile: trust anchors file .*none\.pem does not exist/);
  writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
  const junk = await runInProcess(['proxy', 'env', '--config', configFile(dir, { identity: { trustAnchorsFile: join(dir, 'junk.pem') } })]);
  t.equal(junk.exitCode, 78);
  t.match(junk.stderr, /no PEM certificate found/);
  const unset = await runInProcess(['proxy', 'env', '--set', 'identity.spiffeId=']);
  t.equal(unset.exitCode, 78);
  t.match(unset.stderr, /identity\.spiffeId: not set; required by mesh-harness proxy env/);
  const usage = await runInProcess(['proxy', 'nonsense']);
  t.equal(usage.exitCode, 64);
});

t.test('run reports every host problem at once, as configuration errors', async (t) => {
  const dir = tempDir(t, 'mh-config-');
  const path = configFile(dir, { identity: { trustAnchorsFile: join(dir, 'none.pem') }, proxy: { user: 'mh-config-no-such-user', group: 'root', binary: join(dir, 'no-proxy') } });
  const result = await runInProcess(['run', '--config', path]);
  t.equal(result.exitCode, 78, result.stderr);
  t.match(result.stderr, /invalid configuration \(4 problems\)/);
  t.match(result.stderr, /proxy\.user: got "mh-config-no-such-user"; user "mh-config-no-such-user" does not exist/);
  t.match(result.stderr, /proxy\.group: got "root"; resolves to gid 0/);
  t.match(result.stderr, /identity\.trustAnchorsFile: trust anchors file .* does not exist/);
  t.match(result.stderr, /proxy\.binary: got ".*no-proxy"; is not an executable file/);
});

t.test('managed mode requirements fail config validate, not run', async (t) => {
  const dir = tempDir(t, 'mh-config-');
  const path = join(dir, 'c.json');
  writeFileSync(path, JSON.stringify({ ...REQUIRED, spire: { mode: 'managed' } }));
  const result = await runInProcess(['config', 'validate', '--file-only', path]);
  t.equal(result.exitCode, 78);
  t.match(result.stderr, /\(2 problems\)/);
  for (const field of ['serverAddress', 'trustBundleFile']) t.match(result.stderr, new RegExp(`spire\\.${field}: got ""; required when spire\\.mode is "managed"`));
});
