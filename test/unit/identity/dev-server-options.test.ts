import t from 'tap';
import { DevServerUsageError, parseDevServerArgs } from '../../../src/dev/workload-api/options.ts';

const ID = 'spiffe://root.linkerd.cluster.local/vm/web';

t.test('flags give the server options, with defaults', async (t) => {
  t.same(parseDevServerArgs(['--socket', 'unix:///run/dev/api.sock', '--spiffe-id', ID], {}), {
    socketPath: '/run/dev/api.sock',
    trustDomain: 'root.linkerd.cluster.local',
    spiffeIds: [ID],
    ttlMs: 60_000,
    logLevel: 'info',
  });
  const full = parseDevServerArgs(
    ['--socket', '/run/a.sock', '--spiffe-id', 'spiffe://td/a', '--spiffe-id', 'spiffe://td/b', '--trust-domain', 'td', '--ttl', '10s', '--rotate-every', '2s', '--trust-anchors-out', '/tmp/anchors.pem', '--ca-cert', '/c.pem', '--ca-key', '/k.pem', '--log-level', 'debug'],
    {},
  );
  t.same(full, { socketPath: '/run/a.sock', trustDomain: 'td', spiffeIds: ['spiffe://td/a', 'spiffe://td/b'], ttlMs: 10_000, rotateEveryMs: 2000, trustAnchorsOut: '/tmp/anchors.pem', caCertFile: '/c.pem', caKeyFile: '/k.pem', logLevel: 'debug' });
  t.equal(parseDevServerArgs(['--help'], {}), undefined);
});

t.test('the environment fills what flags leave out; flags win', async (t) => {
  const env = { MESH_DEV_WORKLOAD_API_SOCKET: '/run/env.sock', MESH_DEV_WORKLOAD_API_SPIFFE_ID: `${ID}, spiffe://root.linkerd.cluster.local/vm/db`, MESH_DEV_WORKLOAD_API_TTL: '30s' };
  const options = parseDevServerArgs(['--ttl', '20s'], env)!;
  t.equal(options.socketPath, '/run/env.sock');
  t.same(options.spiffeIds, [ID, 'spiffe://root.linkerd.cluster.local/vm/db']);
  t.equal(options.ttlMs, 20_000);
});

t.test('bad input names the flag and the value', async (t) => {
  const bad: Array<[string[], RegExp]> = [
    [['--spiffe-id', ID], /--socket is required/],
    [['--socket', 'tcp://x:1', '--spiffe-id', ID], /--socket: .*not a Unix socket/],
    [['--socket', '/a.sock'], /--spiffe-id is required/],
    [['--socket', '/a.sock', '--spiffe-id', 'spiffe://elsewhere/x'], /"spiffe:\/\/elsewhere\/x" is not in trust domain root.linkerd.cluster.local/],
    [['--socket', '/a.sock', '--spiffe-id', ID, '--ttl', 'soon'], /--ttl "soon" is not a positive duration/],
    [['--socket', '/a.sock', '--spiffe-id', ID, '--ttl', '10s', '--rotate-every', '10s'], /--rotate-every 10s must be shorter than --ttl 10s/],
    [['--socket', '/a.sock', '--spiffe-id', ID, '--ca-cert', '/c.pem'], /--ca-cert and --ca-key go together/],
    [['--socket', '/a.sock', '--spiffe-id', ID, '--log-level', 'loud'], /--log-level "loud"/],
    [['--socket', '/a.sock', '--spiffe-id', ID, '--trust-domain', 'Bad Domain'], /--trust-domain "Bad Domain" is not a trust domain name/],
    [['--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [argv, message] of bad) t.throws(() => parseDevServerArgs(argv, {}), { constructor: DevServerUsageError, message }, argv.join(' '));
});
