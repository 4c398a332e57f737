import t from 'tap';
import { CLUSTER_PROBE_LIMITS, describeHandler, parseProbeList, probeListProblems, PROBE_DEFAULTS } from '../../../src/probes/spec.ts';

t.test('Kubernetes defaults fill every timing field; handler defaults as kubelet (host ours: 127.0.0.1)', async (t) => {
  const { probes, problems } = parseProbeList([{ httpGet: { port: 8080 } }, { tcpSocket: { port: 'db' } }, { grpc: { port: 9090 } }, { exec: { command: ['true'] } }], 'probes.workload', 'local');
  t.same(problems, []);
  t.equal(probes.length, 4);
  for (const probe of probes) {
    t.equal(probe.periodSeconds, 10);
    t.equal(probe.timeoutSeconds, 1);
    t.equal(probe.successThreshold, 1);
    t.equal(probe.failureThreshold, 3);
    t.equal(probe.initialDelaySeconds, 0);
  }
  t.same(PROBE_DEFAULTS, { initialDelaySeconds: 0, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 });
  t.same(probes[0]!.handler, { kind: 'httpGet', scheme: 'HTTP', host: '127.0.0.1', port: 8080, path: '/', headers: [] });
  t.same(probes[1]!.handler, { kind: 'tcpSocket', host: '127.0.0.1', port: 'db' });
  t.same(probes[2]!.handler, { kind: 'grpc', host: '127.0.0.1', port: 9090, service: '' });
  t.same(probes.map((p) => p.name), ['probes.workload[0]', 'probes.workload[1]', 'probes.workload[2]', 'probes.workload[3]'], 'unnamed probes are named by where they were written');
  t.equal(describeHandler(probes[0]!.handler), 'GET http://127.0.0.1:8080/');
});

t.test('every field is parsed as written', async (t) => {
  const { probes, problems } = parseProbeList([{
    name: 'web',
    httpGet: { scheme: 'HTTPS', host: '::1', port: 'http', path: '/healthz?full=1', httpHeaders: [{ name: 'Host', value: 'web.local' }, { name: 'X-Probe', value: 'yes' }] },
    initialDelaySeconds: 5, periodSeconds: 2, timeoutSeconds: 3, successThreshold: 2, failureThreshold: 4,
  }], 'spec.probes', 'cluster');
  t.same(problems, []);
  t.same(probes[0], {
    name: 'web', source: 'cluster',
    handler: { kind: 'httpGet', scheme: 'HTTPS', host: '::1', port: 'http', path: '/healthz?full=1', headers: [{ name: 'Host', value: 'web.local' }, { name: 'X-Probe', value: 'yes' }] },
    initialDelaySeconds: 5, periodSeconds: 2, timeoutSeconds: 3, successThreshold: 2, failureThreshold: 4,
  });
  t.equal(describeHandler(probes[0]!.handler, 8443), 'GET https://[::1]:8443/healthz?full=1');
});

t.test('strict: every problem names its field path, the value and what is allowed', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not a list', { httpGet: { port: 80 } }, /^spec\.probes: got \{"httpGet":\{"port":80\}\}; must be a list of probes/],
    ['no handler', [{ periodSeconds: 5 }], /^spec\.probes\[0\]: has no handler; needs exactly one of httpGet, tcpSocket, grpc, exec$/],
    ['two handlers', [{ httpGet: { port: 80 }, exec: { command: ['x'] } }], /^spec\.probes\[0\]: has httpGet and exec; needs exactly one of/],
    ['unknown probe key', [{ tcpSocket: { port: 80 }, periodSecond: 5 }], /^spec\.probes\[0\]\.periodSecond: unknown key; allowed: name, httpGet, tcpSocket, grpc, exec, initialDelaySeconds/],
    ['unknown handler key', [{ httpGet: { port: 80, headers: [] } }], /^spec\.probes\[0\]\.httpGet\.headers: unknown key; allowed: path, port, host, scheme, httpHeaders$/],
    ['liveness-only field', [{ tcpSocket: { port: 80 }, terminationGracePeriodSeconds: 5 }], /terminationGracePeriodSeconds: unknown key; applies to liveness probes only/],
    ['port out of range', [{ tcpSocket: { port: 70000 } }], /^spec\.probes\[0\]\.tcpSocket\.port: got 70000; must be a port number 1-65535 or the name of a workload port/],
    ['bad port name', [{ httpGet: { port: 'HTTP_PORT' } }], /^spec\.probes\[0\]\.httpGet\.port: got "HTTP_PORT"/],
    ['numeric string port', [{ httpGet: { port: '8080' } }], /^spec\.probes\[0\]\.httpGet\.port: got "8080"/],
    ['grpc port by name', [{ grpc: { port: 'grpc' } }], /^spec\.probes\[0\]\.grpc\.port: got "grpc"; must be a port number 1-65535$/],
    ['grpc service type', [{ grpc: { port: 9090, service: 5 } }], /^spec\.probes\[0\]\.grpc\.service: got 5; must be a string/],
    ['bad scheme', [{ httpGet: { port: 80, scheme: 'http' } }], /^spec\.probes\[0\]\.httpGet\.scheme: got "http"; must be HTTP or HTTPS$/],
    ['bad path', [{ httpGet: { port: 80, path: 'healthz' } }], /^spec\.probes\[0\]\.httpGet\.path: got "healthz"; must start with "\/"/],
    ['bad host', [{ httpGet: { port: 80, host: 'a/b@c' } }], /^spec\.probes\[0\]\.httpGet\.host: got "a\/b@c"; must be an IP address or a host name$/],
    ['bad header name', [{ httpGet: { port: 80, httpHeaders: [{ name: 'X Bad', value: 'v' }] } }], /^spec\.probes\[0\]\.httpGet\.httpHeaders\[0\]\.name: got "X Bad"/],
    ['header injection', [{ httpGet: { port: 80, httpHeaders: [{ name: 'X', value: 'a\r\nEvil: 1' }] } }], /httpHeaders\[0\]\.value: .*without line breaks/],
    ['empty command', [{ exec: { command: [] } }], /^spec\.probes\[0\]\.exec\.command: got \[\]; must be a non-empty list of strings/],
    ['command as a string', [{ exec: { command: 'curl localhost' } }], /exec\.command: got "curl localhost"; must be a non-empty list of strings, the program first \(no shell/],
    ['zero period', [{ tcpSocket: { port: 80 }, periodSeconds: 0 }], /^spec\.probes\[0\]\.periodSeconds: got 0; must be a whole number from 1 to 300 for a probe from the cluster$/],
    ['fractional timeout', [{ tcpSocket: { port: 80 }, timeoutSeconds: 0.5 }], /^spec\.probes\[0\]\.timeoutSeconds: got 0\.5; must be a whole number from 1/],
    ['negative delay', [{ tcpSocket: { port: 80 }, initialDelaySeconds: -1 }], /initialDelaySeconds: got -1; must be a whole number from 0 to 3600 for a probe from the cluster$/],
    ['threshold as text', [{ tcpSocket: { port: 80 }, failureThreshold: '3' }], /failureThreshold: got "3"; must be a whole number from 1/],
    ['duplicate names', [{ name: 'a', tcpSocket: { port: 80 } }, { name: 'a', tcpSocket: { port: 81 } }], /^spec\.probes\[1\]\.name: got "a"; must be unique in the list$/],
    ['entry not an object', ['tcp:80'], /^spec\.probes\[0\]: got "tcp:80"; must be an object/],
  ];
  for (const [name, raw, expected] of cases) {
    const { problems } = parseProbeList(raw, 'spec.probes', 'cluster');
    t.equal(problems.length, 1, `${name}: ${problems.join(' | ')}`);
    t.match(problems[0] ?? '', expected, name);
  }
});

t.test('all problems are reported at once, and good probes survive a bad neighbour', async (t) => {
  const { probes, problems } = parseProbeList([{ tcpSocket: { port: 0 }, periodSeconds: 0 }, { tcpSocket: { port: 80 } }], 'spec.probes', 'cluster');
  t.equal(problems.length, 2);
  t.same(probes.map((p) => p.name), ['spec.probes[1]']);
  t.same(probeListProblems([], 'probes.workload'), []);
});

t.test('a probe from the cluster is bounded where the VM\'s own probes are not; out of bounds is refused, not clamped', async (t) => {
  const at = (probe: Record<string, unknown>) => [{ tcpSocket: { port: 80 }, ...probe }];
  const bounds: Array<[string, number, number]> = [
    ['timeoutSeconds', 60, 61],
    ['periodSeconds', 300, 301],
    ['initialDelaySeconds', 3600, 3601],
  ];
  for (const [field, most, over] of bounds) {
    t.same(parseProbeList(at({ [field]: most }), 'spec.probes', 'cluster').problems, [], `${field} ${most} is the most the cluster may ask`);
    const refused = parseProbeList(at({ [field]: over }), 'spec.probes', 'cluster');
    t.same(refused.probes, [], `${field} ${over} from the cluster: the probe does not run`);
    t.same(refused.problems, [`spec.probes[0].${field}: got ${over}; must be a whole number from ${field === 'initialDelaySeconds' ? 0 : 1} to ${most} for a probe from the cluster`]);
    const local = parseProbeList(at({ [field]: 86_400 }), 'probes.workload', 'local');
    t.same(local.problems, [], `${field} up to one day in the VM's own config`);
    t.equal(local.probes[0]![field as 'timeoutSeconds'], 86_400);
  }
  t.same(parseProbeList(at({ timeoutSeconds: 86_401 }), 'probes.workload', 'local').problems, ['probes.workload[0].timeoutSeconds: got 86401; must be a whole number from 1 to 86400']);
});

t.test('a probe from the cluster sets no hop-by-hop or framing header, and bounded headers and paths', async (t) => {
  const withHeader = (name: string, value = 'x') => [{ httpGet: { port: 80, httpHeaders: [{ name, value }] } }];
  for (const name of ['Connection', 'keep-alive', 'Transfer-Encoding', 'Content-Length', 'Upgrade', 'TE', 'Trailer', 'Proxy-Authorization', 'Proxy-Connection', 'Expect']) {
    const { problems } = parseProbeList(withHeader(name), 'spec.probes', 'cluster');
    t.equal(problems.length, 1, name);
    t.match(problems[0] ?? '', new RegExp(`^spec\\.probes\\[0\\]\\.httpGet\\.httpHeaders\\[0\\]\\.name: got "${name}"; describes the connection or the message framing`), name);
    t.same(parseProbeList(withHeader(name), 'probes.workload', 'local').problems, [], `${name} is the VM's own business in its own probes`);
  }
  for (const name of ['Host', 'Authorization', 'X-Probe', 'Accept']) t.same(parseProbeList(withHeader(name), 'spec.probes', 'cluster').problems, [], `${name} is allowed`);

  const many = Array.from({ length: CLUSTER_PROBE_LIMITS.headers + 1 }, (_, i) => ({ name: `X-${i}`, value: 'v' }));
  t.match(parseProbeList([{ httpGet: { port: 80, httpHeaders: many } }], 'spec.probes', 'cluster').problems, [/^spec\.probes\[0\]\.httpGet\.httpHeaders: got "17 headers"; a probe from the cluster may set at most 16$/]);
  t.same(parseProbeList([{ httpGet: { port: 80, httpHeaders: many.slice(1) } }], 'spec.probes', 'cluster').problems, []);
  t.match(parseProbeList(withHeader('X-Long', 'v'.repeat(1025)), 'spec.probes', 'cluster').problems, [/httpHeaders\[0\]\.value: got "v+\.\.\.; must be at most 1024 characters for a probe from the cluster$/]);
  t.match(parseProbeList([{ httpGet: { port: 80, path: `/${'a'.repeat(2048)}` } }], 'spec.probes', 'cluster').problems, [/httpGet\.path: .*must be at most 2048 characters for a probe from the cluster$/]);
  t.same(parseProbeList([{ httpGet: { port: 80, path: `/${'a'.repeat(2047)}` } }], 'spec.probes', 'cluster').problems, []);
});

t.test('the cluster gives a VM a bounded number of probes; over the bound, none runs', async (t) => {
  const list = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `p${i}`, tcpSocket: { port: 80 } }));
  t.equal(parseProbeList(list(CLUSTER_PROBE_LIMITS.probes), 'spec.probes', 'cluster').probes.length, 32);
  const over = parseProbeList(list(CLUSTER_PROBE_LIMITS.probes + 1), 'spec.probes', 'cluster');
  t.same(over.probes, []);
  t.same(over.problems, ['spec.probes: got "33 probes"; the cluster may give a VM at most 32; none of them is run']);
  t.equal(parseProbeList(list(40), 'probes.workload', 'local').probes.length, 40, 'the VM\'s own list is not bounded');
});
