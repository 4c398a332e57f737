import t from 'tap';
import { hasCapability, parseProcNetTcp, parseProcStat, parseProcStatus, parseRouteGet } from '../../../src/check/proc.ts';

t.test('/proc/net/tcp and tcp6: only listening sockets, addresses in host byte order', async (t) => {
  const tcp = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1030 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0',
    '   1: 00000000:102F 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 4343 1 0000000000000000 100 0 0 10 0',
    '   2: 0100007F:1030 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 20 4 30 10 -1',
  ].join('\n');
  t.same(parseProcNetTcp(tcp, 4), [
    { address: '127.0.0.1', port: 4144, uid: 0, inode: 4242 },
    { address: '0.0.0.0', port: 4143, uid: 999, inode: 4343 },
  ]);
  const tcp6 = [
    '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 00000000000000000000000000000000:102F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5151 1 0000000000000000 100 0 0 10 0',
    '   1: 00000000000000000000000001000000:1060 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5252 1 0000000000000000 100 0 0 10 0',
    '   2: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5353 1 0000000000000000 100 0 0 10 0',
  ].join('\n');
  t.same(parseProcNetTcp(tcp6, 6).map((l) => `${l.address} ${l.port}`), [':: 4143', '::1 4192', '::ffff:7f00:1 8080']);
});

t.test('/proc/self/status: effective uid and capabilities', async (t) => {
  const root = parseProcStatus('Name:\tnode\nUid:\t0\t0\t0\t0\nGid:\t0\t995\t0\t0\nCapEff:\t000001ffffffffff\n');
  t.equal(root.uid, 0);
  t.ok(hasCapability(root, 'CAP_NET_ADMIN'));
  // 0x1fffffeeff: everything but bit 8 and 12 (CAP_NET_ADMIN).
  const reduced = parseProcStatus('Uid:\t1000\t0\t0\t0\nCapEff:\t0000001fffffeeff\n');
  t.equal(reduced.uid, 0, 'the effective uid, not the real one');
  t.notOk(hasCapability(reduced, 'CAP_NET_ADMIN'));
  t.ok(hasCapability(reduced, 'CAP_SETUID'));
  t.throws(() => parseProcStatus('Name: x\n'), /no Uid or CapEff line/);
});

t.test('/proc/<pid>/stat: a command name with spaces and parentheses', async (t) => {
  t.same(parseProcStat('4242 (my (odd) prog) S 17 4242 4242 0 -1'), { comm: 'my (odd) prog', ppid: 17 });
  t.equal(parseProcStat('garbage'), undefined);
});

t.test('ip route get: gateway, device and source', async (t) => {
  t.same(parseRouteGet('10.42.0.7 via 10.0.0.1 dev eth0 src 10.0.0.5 uid 0 \n    cache \n'), { via: '10.0.0.1', dev: 'eth0', src: '10.0.0.5' });
  t.same(parseRouteGet('local 127.0.0.1 dev lo src 127.0.0.1 uid 0\n'), { dev: 'lo', src: '127.0.0.1' });
  t.equal(parseRouteGet(''), undefined);
});
