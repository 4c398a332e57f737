/**
 * Every reproduced failure of issue 12 ("no config, flag or file can crash, hang, or quietly
 * turn into root"), through the real CLI entry point in-process, each checked against the
 * contract and for its specific answer.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { runInProcess } from '../../helpers/cli-inprocess.ts';
import { violations } from '../../helpers/config-contract.ts';
import { tempDir } from '../../helpers/tmp.ts';

type T = Test;

async function expect(t: T, argv: string[], env: Record<string, string>, code: number, pattern?: RegExp) {
  const result = await runInProcess(argv, env);
  t.same(violations(result), [], `contract kept: ${argv.join(' ').slice(0, 80)}`);
  t.equal(result.exitCode, code, `exit ${code}: ${result.stderr.slice(0, 400)}`);
  if (pattern) t.match(`${result.stdout}${result.stderr}`, pattern);
  return result;
}

function file(t: T, content: unknown): string {
  const dir = tempDir(t, 'mh-config-');
  const path = join(dir, 'config.json');
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

t.test('1. user and group names cannot inject getent options or resolve to root', async (t) => {
  for (const name of ['--no-idn', '--service=files', '-sfiles', '-1', 'a\u0000b', 'root', '0']) {
    for (const kind of ['user', 'group'] as const) {
      const path = file(t, { proxy: { [kind]: name } });
      const result = await expect(t, ['iptables', 'render', '--config', path], {}, 78, new RegExp(`proxy\\.${kind}: got `));
      t.notMatch(result.stdout, /--(uid|gid)-owner 0 /, `${kind} ${JSON.stringify(name)} never exempts id 0`);
    }
  }
  const root = await runInProcess(['iptables', 'render', '--config', file(t, { proxy: { user: 'root' } })]);
  t.match(root.stderr, /proxy\.user: got "root"; resolves to uid 0 \(root\); .* root's traffic would bypass the mesh/);
  await expect(t, ['iptables', 'render', '--set', 'proxy.user=nobody', '--set', 'proxy.group=nogroup'], {}, 0, /--uid-owner 65534 /);
});

t.test('2. an object inside a leaf is a problem with the field, not a crash', async (t) => {
  await expect(t, ['config', 'validate', file(t, { log: { level: { a: { b: 1 } } } })], {}, 78, /log\.level: got \{"a": \{…1 keys\}\}; must be one of/);
  await expect(t, ['config', 'validate', file(t, { proxy: { extraEnv: { A: { b: 1 } } } })], {}, 78, /proxy\.extraEnv\.A: got \{"b": 1\}; must be a string/);
});

t.test('3. deep nesting anywhere is refused, never a stack overflow', async (t) => {
  const deep = `{"bogus":${'['.repeat(2000)}${']'.repeat(2000)}}`;
  await expect(t, ['config', 'validate', file(t, deep)], {}, 78, /not valid JSON: nesting deeper than 64 levels at line 1/);
  await expect(t, ['config', 'show'], { MESH_HARNESS_PROXY_EXTRA_ENV: `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}` }, 78, /proxy\.extraEnv \(from MESH_HARNESS_PROXY_EXTRA_ENV\): got "\{\\"a\\":\{\\"a\\":.*must be an object of environment variable names/);
});

t.test('4. "length" in a list field is just a key of an object, which is not a list', async (t) => {
  for (const length of [-1, 4294967295, 100000000]) {
    await expect(t, ['config', 'validate', file(t, { workload: { ips: { length } } })], {}, 78, /workload\.ips: got \{"length": .*\}; must be a list of IP addresses/);
  }
});

t.test('5. an object where a list is required is refused at validation', async (t) => {
  await expect(t, ['config', 'validate', file(t, { iptables: { ignoreInboundPorts: { 5: 80 } } })], {}, 78, /iptables\.ignoreInboundPorts: got \{"5": 80\}; must be a list of ports/);
  await expect(t, ['config', 'validate', file(t, { workload: { ports: '8080' } })], {}, 78, /workload\.ports: got "8080"; must be a list/);
});

t.test('6. only regular files of bounded size are read', async (t) => {
  const dir = tempDir(t, 'mh-config-');
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  await expect(t, ['config', 'validate', fifo], {}, 78, /is not a regular file \(a FIFO, socket or device\)/);
  const zero = join(dir, 'zero.json');
  symlinkSync('/dev/zero', zero);
  await expect(t, ['config', 'validate', zero], {}, 78, /is not a regular file/);
  mkdirSync(join(dir, 'sub'));
  await expect(t, ['config', 'validate', join(dir, 'sub')], {}, 78, /is a directory/);
  const big = join(dir, 'big.json');
  writeFileSync(big, `{"log":{"level":"${'x'.repeat(2 * 1024 * 1024)}"}}`);
  await expect(t, ['config', 'validate', big], {}, 78, /may be at most 1048576 bytes/);
});

t.test('7. an empty path is an error, not the defaults', async (t) => {
  await expect(t, ['config', 'validate', ''], {}, 78, /config file "": the path is empty/);
  await expect(t, ['config', 'show', '--config', ''], {}, 78, /the path is empty/);
});

t.test('8. __proto__, constructor and every other unknown key are reported', async (t) => {
  const path = file(t, '{"__proto__":{"x":1},"proxy":{"__proto__":{"polluted":true},"constructor":1,"destinationAddr":"dst.example:8086"},"log":{"prototype":2},"identity":{"spiffeId":"spiffe://root.linkerd.cluster.local/vm/web","serverName":"web.vm.cluster.local"}}');
  const result = await expect(t, ['config', 'validate', path], {}, 78);
  t.match(result.stderr, /\(4 problems\)/);
  t.match(result.stderr, /__proto__: got \{"x": 1\}; unknown section/);
  t.match(result.stderr, /proxy\.__proto__: got \{"polluted": true\}; unknown key; proxy accepts/);
  t.match(result.stderr, /proxy\.constructor: got 1; unknown key/);
  t.match(result.stderr, /log\.prototype: got 2; unknown key/);
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'nothing reached Object.prototype');
});

t.test('9. every problem keeps the one-line format with the value and what is allowed', async (t) => {
  await expect(t, ['config', 'show', '--set', 'admin.a.b=1'], {}, 78, /--set admin\.a\.b: got "1"; unknown key; admin accepts: address, port, allowNonLoopback/);
  await expect(t, ['config', 'validate', file(t, { '': 1 })], {}, 78, /\[""\]: got 1; unknown section; allowed sections/);
  const escaped = await expect(t, ['config', 'validate', file(t, { log: { 'a\nb': 1, '\u001b[31mred': 2 } })], {}, 78);
  t.match(escaped.stderr, /log\["a\\nb"\]: got 1; unknown key/);
  t.match(escaped.stderr, /log\["\\u001b\[31mred"\]: got 2; unknown key/);
  t.notMatch(escaped.stderr, /\u001b/, 'no raw escape reaches the terminal');
  const json = await expect(t, ['config', 'validate', file(t, '{\n  "log": {\n    "level": }\n}')], {}, 78, /not valid JSON: unexpected "}" at line 3, column 14/);
  t.equal(json.stderr.trim().split('\n').length, 2, 'the JSON error is one line under the header');
});

t.test('10. a huge bad value is echoed truncated', async (t) => {
  const result = await expect(t, ['config', 'show'], { MESH_HARNESS_LOG_LEVEL: 'x'.repeat(5_000_000) }, 78, /log\.level \(from MESH_HARNESS_LOG_LEVEL\): got "x{60}"… \(5000000 characters\); must be one of/);
  t.ok(result.outputChars < 2000, `${result.outputChars} characters of output`);
});

t.test('11. many unknown keys: linear work, bounded output', async (t) => {
  const keys = Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`k${i}`, 1]));
  // The 60 000 unknown keys and the three settings run requires.
  const result = await expect(t, ['config', 'validate', file(t, { log: keys })], {}, 78, /… and 59953 more problems of the same kinds/);
  t.equal(result.stderr.trim().split('\n').length, 52, 'header, 50 problems and the count of the rest');
});

t.test('12. small things', async (t) => {
  const ok = file(t, {});
  await expect(t, ['config', 'validate', ok, 'x', 'y'], {}, 64, /expected at most one file, got 3/);
  await expect(t, ['config', 'show', '--set', '='], {}, 64, /--set "=": expected section\.key=value/);
  await expect(t, ['config', 'show', '--set', 'a.b'], {}, 64, /--set "a\.b": expected section\.key=value/);
  const complete = file(t, { identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/web', serverName: 'web.vm.cluster.local' }, proxy: { destinationAddr: 'dst.example:8086' } });
  const warned = await expect(t, ['config', 'validate', '--file-only', complete], { MESH_HARNESS_ADMIN_PORTS: '1' }, 0, /valid/);
  t.match(warned.stderr, /mesh-harness: warning: "MESH_HARNESS_ADMIN_PORTS": unknown variable, ignored; did you mean MESH_HARNESS_ADMIN_PORT\?/);
  await expect(t, ['config', 'validate', file(t, '{"admin":{"port":1e309}}')], {}, 78, /admin\.port: got a number out of range; must be a port number/);
  await expect(t, ['config', 'show', '--set', 'identity.trustAnchorsFile=/etc/a\nb'], {}, 78, /identity\.trustAnchorsFile \(--set\): got "\/etc\/a\\nb"; must be a non-empty path without NUL, newline/);
  await expect(t, ['config', 'show'], { MESH_HARNESS_SPIRE_AGENT_BINARY: 'spire-agent\u0007' }, 78, /spire\.agentBinary \(from MESH_HARNESS_SPIRE_AGENT_BINARY\): got "spire-agent\\u0007"/);
  await expect(t, ['config', 'validate', file(t, { probes: { workload: [{ name: ['x'], exec: { command: ['true'], shell: 1 } }] } })], {}, 78, /\(5 problems\)/);
  await expect(t, ['config', 'validate', file(t, { admin: { address: 'localhost' } })], {}, 78, /admin\.address: got "localhost"; must be an IPv4 or IPv6 address/);
});

t.test('config validate --file-only says what it cannot check without the host', async (t) => {
  const complete = file(t, { identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/web', serverName: 'web.vm.cluster.local' }, proxy: { destinationAddr: 'dst.example:8086' } });
  const result = await expect(t, ['config', 'validate', '--file-only', complete], {}, 0);
  t.match(result.stdout, /: valid \(schema and the settings mesh-harness run requires\)\nnot checked \(--file-only; without it, or mesh-harness check --config .*, on the target host\):/);
  t.match(result.stdout, /proxy\.user and proxy\.group exist on this host and are not root/);
});
