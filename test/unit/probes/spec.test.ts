import t from 'tap';
import { describeHandler, parseProbeList, probeListProblems, PROBE_DEFAULTS } from '../../../src/probes/spec.ts';

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
    ['zero period', [{ tcpSocket: { port: 80 }, periodSeconds: 0 }], /^spec\.probes\[0\]\.periodSeconds: got 0; must be a whole number from 1 to 86400$/],
    ['fractional timeout', [{ tcpSocket: { port: 80 }, timeoutSeconds: 0.5 }], /^spec\.probes\[0\]\.timeoutSeconds: got 0\.5; must be a whole number from 1/],
    ['negative delay', [{ tcpSocket: { port: 80 }, initialDelaySeconds: -1 }], /initialDelaySeconds: got -1; must be a whole number from 0 to 86400$/],
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
