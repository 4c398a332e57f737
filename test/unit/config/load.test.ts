import t from 'tap';
import { loadConfig } from '../../../src/config/load.ts';
import { ConfigError } from '../../../src/util/errors.ts';
import { requiredForRun } from '../../../src/config/schema.ts';
import { tempDir, writeJson } from '../../helpers/tmp.ts';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

t.test('defaults match the real linkerd2-proxy ports and the admin contract', async (t) => {
  const dir = tempDir(t);
  const { config, origins, file } = loadConfig({ defaultPath: `${dir}/absent.json`, env: {} });
  t.equal(file, undefined, 'a missing default file is not an error');
  t.equal(config.proxy.inboundPort, 4143);
  t.equal(config.proxy.outboundPort, 4140);
  t.equal(config.proxy.adminPort, 4191);
  t.equal(config.admin.address, '127.0.0.1');
  t.equal(config.admin.port, 4192);
  t.same(config.iptables.ignoreInboundPorts, [], 'nothing beyond the always exempt SSH and proxy ports');
  t.equal(config.iptables.redirectSsh, false);
  t.same(loadConfig({ path: null, env: {}, sets: ['iptables.ignoreInboundPorts=8443,9000-9100'] }).config.iptables.ignoreInboundPorts, [{ from: 8443, to: 8443 }, { from: 9000, to: 9100 }], 'port specs are parsed');
  t.equal(config.spire.mode, 'external');
  t.same(origins.get('proxy.inboundPort'), { source: 'default' });
});

t.test('precedence: defaults < file < environment < flags, each layer overriding the one below', async (t) => {
  const dir = tempDir(t);
  const path = writeJson(dir, 'config.json', { log: { level: 'warn' }, proxy: { inboundPort: 5000, outboundPort: 5001, adminPort: 5002 } });
  const env = { MESH_HARNESS_PROXY_OUTBOUND_PORT: '6001', MESH_HARNESS_PROXY_ADMIN_PORT: '6002' };
  const { config, origins } = loadConfig({ path, env, sets: ['proxy.adminPort=7002'] });
  t.equal(config.proxy.controlPort, 4190, 'default where nothing else sets it');
  t.equal(config.proxy.inboundPort, 5000, 'file over default');
  t.equal(config.proxy.outboundPort, 6001, 'env over file');
  t.equal(config.proxy.adminPort, 7002, 'flag over env');
  t.same(origins.get('proxy.controlPort'), { source: 'default' });
  t.same(origins.get('proxy.inboundPort'), { source: 'file', path });
  t.same(origins.get('proxy.outboundPort'), { source: 'env', name: 'MESH_HARNESS_PROXY_OUTBOUND_PORT' });
  t.same(origins.get('proxy.adminPort'), { source: 'flag' });
  t.equal(config.log.level, 'warn');
});

t.test('environment values are typed: lists, durations, booleans, JSON objects', async (t) => {
  const dir = tempDir(t);
  const { config } = loadConfig({
    defaultPath: `${dir}/absent.json`,
    env: {
      MESH_HARNESS_IPTABLES_IGNORE_OUTBOUND_PORTS: '25,1000-2000',
      MESH_HARNESS_IPTABLES_IGNORE_OUTBOUND_SUBNETS: '["169.254.169.254/32","fd00::/8"]',
      MESH_HARNESS_IDENTITY_EXPIRY_MARGIN: '5m',
      MESH_HARNESS_IPTABLES_ENABLED: 'false',
      MESH_HARNESS_PROXY_EXTRA_ENV: '{"RUST_BACKTRACE":"1"}',
      MESH_HARNESS_WORKLOAD_PORTS: '8080,9090',
    },
  });
  t.same(config.iptables.ignoreOutboundPorts, [{ from: 25, to: 25 }, { from: 1000, to: 2000 }]);
  t.same(config.iptables.ignoreOutboundSubnets, [{ family: 'ipv4', text: '169.254.169.254/32' }, { family: 'ipv6', text: 'fd00::/8' }], 'subnets are parsed CIDRs');
  t.equal(config.identity.expiryMargin, 300_000);
  t.equal(config.iptables.enabled, false);
  t.same(config.proxy.extraEnv, { RUST_BACKTRACE: '1' });
  t.same(config.workload.ports, [{ port: 8080 }, { port: 9090 }]);
});

t.test('durations: 100ms, 10s, 5m, 1h; a bare number is refused with a hint', async (t) => {
  const dir = tempDir(t);
  for (const [text, ms] of [['100ms', 100], ['10s', 10_000], ['5m', 300_000], ['1h', 3_600_000], ['1.5s', 1500]] as const) {
    const path = writeJson(dir, 'c.json', { proxy: { shutdownGrace: text } });
    t.equal(loadConfig({ path, env: {} }).config.proxy.shutdownGrace, ms, text);
  }
  for (const bare of [30, '30']) {
    const problems = problemsOf(() => loadConfig({ path: writeJson(dir, 'c.json', { proxy: { shutdownGrace: bare } }), env: {} }));
    t.match(problems, [/^proxy\.shutdownGrace: got (30|"30"); must be a duration with a unit.*did you mean 30s\?/]);
  }
  const fromEnv = problemsOf(() => loadConfig({ path: null, env: { MESH_HARNESS_PROXY_SHUTDOWN_GRACE: '30' } }));
  t.match(fromEnv, [/^proxy\.shutdownGrace \(from MESH_HARNESS_PROXY_SHUTDOWN_GRACE\): got "30"; .*did you mean 30s\?/], 'an environment error names the variable');
});

t.test('three mistakes give three lines, each naming path, value and what is allowed', async (t) => {
  const dir = tempDir(t);
  const path = writeJson(dir, 'c.json', { proxy: { inboundPort: 70000, logFormat: 42 }, workload: { colour: 'blue' } });
  const problems = problemsOf(() => loadConfig({ path, env: {} }));
  t.equal(problems.length, 3, problems.join('\n'));
  t.match(problems.find((p) => p.startsWith('proxy.inboundPort')), /got 70000; must be a port number from 1 to 65535/);
  t.match(problems.find((p) => p.startsWith('proxy.logFormat')), /got 42; must be one of "plain", "json"/);
  t.match(problems.find((p) => p.startsWith('workload.colour')), /got "blue"; unknown key; workload accepts: group, namespace/);
});

t.test('every validation error class is reported', async (t) => {
  const dir = tempDir(t);
  const cases: Array<[string, unknown, RegExp]> = [
    ['unknown section', { bogus: {} }, /^bogus: got \{\}; unknown section; allowed sections: workload, identity/],
    ['section not an object', { proxy: 5 }, /^proxy: got 5; must be an object/],
    ['unknown key', { admin: { adress: 'x' } }, /^admin\.adress: got "x"; unknown key; admin accepts: address, port, allowNonLoopback/],
    ['wrong type', { iptables: { enabled: 'yes' } }, /^iptables\.enabled: got "yes"; must be true or false/],
    ['bad port', { admin: { port: 0 } }, /^admin\.port: got 0; must be a port number/],
    ['bad enum', { spire: { mode: 'auto' } }, /^spire\.mode: got "auto"; must be one of "external", "managed"/],
    ['bad duration', { identity: { expiryMargin: '5 minutes' } }, /^identity\.expiryMargin: got "5 minutes"; must be a duration with a unit, such as 100ms/],
    ['bad SPIFFE ID', { identity: { spiffeId: 'https://x' } }, /^identity\.spiffeId: got "https:\/\/x"; must be a SPIFFE ID/],
    ['bad CIDR', { iptables: { ignoreOutboundSubnets: ['10.0.0.0/33'] } }, /^iptables\.ignoreOutboundSubnets\[0\]: got "10\.0\.0\.0\/33"; must be an IPv4 or IPv6 CIDR/],
    ['bad port range', { iptables: { ignoreInboundPorts: ['9000-8000'] } }, /^iptables\.ignoreInboundPorts\[0\]: got "9000-8000"; must be a port from 1 to 65535 or a range/],
    ['too many IPv4 addresses', { workload: { ips: ['10.0.0.1', '10.0.0.2'] } }, /at most one IPv4 and one IPv6/],
    ['bad probe', { probes: { workload: [{ httpGet: { port: 80 }, tcpSocket: { port: 80 } }] } }, /^probes\.workload\[0\]: has httpGet and tcpSocket; needs exactly one of httpGet, tcpSocket, grpc, exec$/],
    ['bad env name', { proxy: { extraEnv: { 'NOT-VALID': 'x' } } }, /^proxy\.extraEnv\.NOT-VALID: got "NOT-VALID"; the name must be letters, digits and "_"/],
    ['port clash', { proxy: { inboundPort: 4140 } }, /^proxy\.outboundPort: got 4140; must differ from proxy\.inboundPort/],
    ['extraEnv overriding a rendered variable', { proxy: { extraEnv: { LINKERD2_PROXY_ADMIN_LISTEN_ADDR: '0.0.0.0:4191' } } }, /^proxy\.extraEnv\.LINKERD2_PROXY_ADMIN_LISTEN_ADDR: the harness renders this variable itself; remove it and set proxy\.adminPort/],
    ['non-loopback admin', { admin: { address: '0.0.0.0' } }, /binds loopback only \(127\.0\.0\.1 or ::1\); set admin\.allowNonLoopback/],
    ['admin address not an IP', { admin: { address: 'localhost' } }, /^admin\.address: got "localhost"; must be an IPv4 or IPv6 address/],
    ['managed mode without its files', { spire: { mode: 'managed', serverAddress: 'spire.example' } }, /^spire\.trustBundleFile: got ""; required when spire\.mode is "managed"/],
    ['a string where a list is expected', { workload: { ports: '8080' } }, /^workload\.ports: got "8080"; must be a list of ports.*write \["8080"\] for one entry/],
    ['probe name of another type', { probes: { workload: [{ name: 5, tcpSocket: { port: 80 } }] } }, /^probes\.workload\[0\]\.name: got 5; must be 1-63 letters, digits/],
    ['unknown key in a probe handler', { probes: { workload: [{ httpGet: { port: 80, hosts: 'x' } }] } }, /^probes\.workload\[0\]\.httpGet\.hosts: unknown key; allowed: path, port, host, scheme, httpHeaders$/],
    ['NUL in a path', { identity: { trustAnchorsFile: '/etc/a\u0000b' } }, /^identity\.trustAnchorsFile: got "\/etc\/a\\u0000b"; must be a non-empty path without NUL/],
    ['newline in a binary name', { proxy: { binary: 'proxy\nrm' } }, /^proxy\.binary: got "proxy\\nrm"; must be an absolute path or a program name/],
    ['a user name that is an option', { proxy: { user: '--no-idn' } }, /^proxy\.user: got "--no-idn"; must be a user or group name .*not starting with "-"/],
  ];
  for (const [name, content, expected] of cases) {
    const path = writeJson(dir, 'c.json', content);
    const problems = problemsOf(() => loadConfig({ path, env: {} }));
    t.equal(problems.length, 1, `${name}: ${problems.join(' | ')}`);
    t.match(problems[0], expected, name);
  }
  t.doesNotThrow(() => loadConfig({ path: writeJson(dir, 'ok.json', { admin: { address: '0.0.0.0', allowNonLoopback: true } }), env: {} }), 'explicitly allowed non-loopback admin');
});

t.test('file-level problems: missing explicit file, invalid JSON, not an object', async (t) => {
  const dir = tempDir(t);
  t.match(problemsOf(() => loadConfig({ path: `${dir}/nope.json`, env: {} }))[0], /does not exist/);
  t.match(problemsOf(() => loadConfig({ path: writeJson(dir, 'bad.json', '{"log": '), env: {} }))[0], /not valid JSON/);
  t.match(problemsOf(() => loadConfig({ path: writeJson(dir, 'arr.json', '[1]'), env: {} }))[0], /^\(top level\): got \[1\]; must be a JSON object with the sections/);
  t.match(problemsOf(() => loadConfig({ path: writeJson(dir, 'empty.json', ''), env: {} }))[0], /is empty; write a JSON object such as \{\}/, 'an empty file is a mistake, not the defaults');
  t.same(loadConfig({ path: writeJson(dir, 'braces.json', '{}'), env: {} }).config.proxy.inboundPort, 4143, '{} means defaults');
});

t.test('bad environment and flag values are reported with their path', async (t) => {
  const dir = tempDir(t);
  const problems = problemsOf(() => loadConfig({ defaultPath: `${dir}/absent.json`, env: { MESH_HARNESS_ADMIN_PORT: 'abc' }, sets: ['log.level=loud', 'proxy.nothing=1'] }));
  t.equal(problems.length, 3, problems.join('\n'));
  t.ok(problems.some((p) => /^admin\.port \(from MESH_HARNESS_ADMIN_PORT\): got "abc"/.test(p)));
  t.ok(problems.some((p) => /^log\.level \(--set\): got "loud"/.test(p)));
  t.ok(problems.some((p) => /^--set proxy\.nothing: got "1"; unknown key; proxy accepts/.test(p)));
  t.throws(() => loadConfig({ path: null, env: {}, sets: ['nope'] }), { name: 'UsageError', message: /--set "nope": expected section\.key=value/ }, 'a malformed flag is a usage error');
});

t.test('fields required by run are named with the variable that sets them', async (t) => {
  const dir = tempDir(t);
  const problems = problemsOf(() => loadConfig({ defaultPath: `${dir}/absent.json`, env: {}, require: requiredForRun, requiredBy: 'mesh-harness run' }));
  t.equal(problems.length, requiredForRun.length);
  t.match(problems[0], /^identity\.spiffeId: not set; required by mesh-harness run: set it in .* or with MESH_HARNESS_IDENTITY_SPIFFE_ID/);
});

t.test('identity.workloadApiSocket is checked at load: a Unix socket, absolute, short enough', async (t) => {
  const accepted = ['unix:///run/spire/agent/api.sock', 'unix:/run/spire/agent/api.sock', '/run/spire/agent/api.sock'];
  for (const value of accepted) t.equal(loadConfig({ path: null, env: {}, sets: [`identity.workloadApiSocket=${value}`] }).config.identity.workloadApiSocket, value, value);
  const refused: Array<[string, RegExp]> = [
    ['tcp://127.0.0.1:8081', /it is not a Unix socket; .*use unix:\/\/\/path\/to\/api\.sock or an absolute path$/],
    ['unix://spire/api.sock', /it names a host or a relative path after unix:\/\//],
    ['api.sock', /it is a relative path/],
    [`/${'a'.repeat(120)}.sock`, /it is 126 bytes; Unix sockets allow at most 107: use a shorter path$/],
  ];
  for (const [value, why] of refused) {
    const problems = problemsOf(() => loadConfig({ path: null, env: {}, sets: [`identity.workloadApiSocket=${value}`] }));
    t.equal(problems.length, 1, value);
    t.match(problems[0], /^identity\.workloadApiSocket \(--set\): got "/, value);
    t.match(problems[0], why, value);
  }
});
