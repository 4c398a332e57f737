import t from 'tap';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { main } from '../../../src/cli/main.ts';
import { tempDir } from '../../helpers/tmp.ts';

async function version(args: string[], env: Record<string, string>) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  const code = await main(['version', ...args], { stdout, stderr, env: { PATH: process.env.PATH ?? '', ...env } });
  return { code, out };
}

function script(dir: string, name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

t.test('reports the proxy and spire-agent binaries from the configuration', async (t) => {
  const dir = tempDir(t);
  // Like linkerd2-proxy: no --version, exits 64 on an environment without its variables.
  const proxy = script(dir, 'linkerd2-proxy', 'echo "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS must be set" >&2; exit 64');
  const agent = script(dir, 'spire-agent', 'echo 1.15.3 >&2');
  const env = { MESH_HARNESS_PROXY_BINARY: proxy, MESH_HARNESS_SPIRE_AGENT_BINARY: agent };

  const text = await version([], env);
  t.equal(text.code, 0);
  t.match(text.out, /^mesh-harness \d+\.\d+\.\d+ \(node [\d.]+\)\n/);
  t.match(text.out, `linkerd2-proxy: ${proxy} (version unknown)`);
  t.match(text.out, `spire-agent: ${agent} 1.15.3`);

  const json = JSON.parse((await version(['--json'], env)).out);
  t.same(json.proxy, { configured: proxy, path: proxy, install: { state: 'unrecorded' } }, 'no install record: not installed by proxy install');
  t.same(json.spireAgent, { configured: agent, path: agent, version: '1.15.3' });
});

t.test('a missing binary is reported, not an error; a broken config falls back to defaults', async (t) => {
  const missing = await version([], { MESH_HARNESS_PROXY_BINARY: '/nonexistent/linkerd2-proxy' });
  t.equal(missing.code, 0);
  t.match(missing.out, 'linkerd2-proxy: /nonexistent/linkerd2-proxy (not found)');

  const broken = await version(['--config', '/nonexistent/config.json'], {});
  t.equal(broken.code, 0);
  t.match(broken.out, /note: configuration not usable \(config file "\/nonexistent\/config.json": does not exist/);
  t.match(broken.out, 'linkerd2-proxy: /usr/lib/linkerd/linkerd2-proxy');
});
