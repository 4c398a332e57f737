import t from 'tap';
import { parseProbeList, type ProbeHandler } from '../../../src/probes/spec.ts';
import { clusterTargetProblem } from '../../../src/probes/targets.ts';
import { cidrContains, parseCidr } from '../../../src/util/cidr.ts';

const cidrs = (...texts: string[]) => texts.map((text) => parseCidr(text)!);
const http = (host: string): ProbeHandler => ({ kind: 'httpGet', scheme: 'HTTP', host, port: 80, path: '/', headers: [] });
const tcp = (host: string): ProbeHandler => ({ kind: 'tcpSocket', host, port: 5432 });

t.test('cidrContains: IPv4, IPv6, prefixes, and IPv4-mapped IPv6 judged as the IPv4 address it reaches', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['10.0.0.0/8', '10.255.1.2', true],
    ['10.0.0.0/8', '11.0.0.1', false],
    ['169.254.169.254/32', '169.254.169.254', true],
    ['169.254.169.254/32', '169.254.169.253', false],
    ['169.254.169.254/32', '::ffff:169.254.169.254', true],
    ['169.254.169.254/32', '::ffff:a9fe:a9fe', true],
    ['0.0.0.0/0', '8.8.8.8', true],
    ['0.0.0.0/0', '::1', false],
    ['fd00::/8', 'fd12:3456::1', true],
    ['fd00::/8', 'fe80::1', false],
    ['::1/128', '::1', true],
    ['::/0', '2001:db8::1', true],
    ['192.0.2.0/24', 'db.example', false],
  ];
  for (const [cidr, address, inside] of cases) t.equal(cidrContains(parseCidr(cidr)!, address), inside, `${address} in ${cidr}`);
});

t.test('a cluster probe may reach loopback and the workload\'s own IPs, and what probes.allowClusterHosts admits', async (t) => {
  const none = { workloadIps: ['192.0.2.10', '2001:db8::10'], allowClusterHosts: [] };
  for (const host of ['127.0.0.1', '127.8.9.10', '::1', '192.0.2.10', '2001:db8::10', '::ffff:192.0.2.10']) {
    t.equal(clusterTargetProblem(http(host), none), undefined, `${host} is allowed`);
  }
  const metadata = clusterTargetProblem(http('169.254.169.254'), none);
  t.equal(metadata, 'it targets 169.254.169.254, which is neither loopback nor this workload\'s IPs (192.0.2.10, 2001:db8::10); add the address to probes.allowClusterHosts in the VM\'s local config to allow it');
  for (const host of ['::ffff:169.254.169.254', '192.0.2.11', '10.0.0.5', '0.0.0.0', '::', 'fe80::1']) {
    t.match(clusterTargetProblem(tcp(host), none), /^it targets .*, which is neither loopback nor/, `${host} is refused`);
  }
  const allowing = { workloadIps: ['192.0.2.10'], allowClusterHosts: cidrs('169.254.169.254/32', '10.0.5.0/24') };
  t.equal(clusterTargetProblem(http('169.254.169.254'), allowing), undefined);
  t.equal(clusterTargetProblem(tcp('10.0.5.77'), allowing), undefined);
  t.match(clusterTargetProblem(tcp('10.0.6.1'), allowing), /nor in probes\.allowClusterHosts \(169\.254\.169\.254\/32, 10\.0\.5\.0\/24\)/);
  t.equal(clusterTargetProblem(tcp('127.0.0.1'), { workloadIps: [], allowClusterHosts: [] }), undefined);
  t.match(clusterTargetProblem(tcp('192.0.2.10'), { workloadIps: [], allowClusterHosts: [] }), /this workload's IPs \(none known\)/);
});

t.test('a cluster probe names its target by IP address: host names are refused, even ones that resolve to loopback', async (t) => {
  const everything = { workloadIps: [], allowClusterHosts: cidrs('0.0.0.0/0', '::/0') };
  for (const host of ['localhost', 'db.corp.internal', '2852039166', '0x7f000001', '169.254.169.254.example.com']) {
    const problem = clusterTargetProblem(tcp(host), everything);
    t.match(problem, /^it names its target by host name \(".*"\); a probe from the cluster must give an IP address/, host);
  }
});

t.test('grpc probes aim at loopback and exec probes at no address: neither is refused for its target', async (t) => {
  const [grpc, exec] = parseProbeList([{ grpc: { port: 9090 } }, { exec: { command: ['true'] } }], 'spec.probes', 'cluster').probes;
  const policy = { workloadIps: [], allowClusterHosts: [] };
  t.equal(clusterTargetProblem(grpc!.handler, policy), undefined);
  t.equal(clusterTargetProblem(exec!.handler, policy), undefined);
});
