import t from 'tap';
import { createNotifier, formatNotification, socketAddress } from '../../../src/systemd/notify.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { startNotifyReceiver } from '../../helpers/notify.ts';
import { tempDir } from '../../helpers/tmp.ts';
import { SKIP_WITHOUT_SETUP } from '../../helpers/host.ts';

t.test('without NOTIFY_SOCKET the notifier is a no-op', async (t) => {
  const notifier = await createNotifier({}, silentLogger());
  t.equal(notifier.enabled, false);
  t.equal(notifier.notify({ READY: 1 }), false);
});

t.test('datagrams arrive on a real socket with this process as the kernel-verified sender', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const dir = tempDir(t);
  const socketPath = `${dir}/notify.sock`;
  const receiver = await startNotifyReceiver(t, socketPath);
  const notifier = await createNotifier({ NOTIFY_SOCKET: socketPath }, silentLogger());
  t.teardown(() => notifier.close());
  t.equal(notifier.notify({ READY: 1, STATUS: 'all good\nreally' }), true);
  const got = await receiver.waitFor('READY=1');
  t.equal(got.pid, process.pid, 'sender PID is the harness itself, so NotifyAccess=main accepts it');
  t.equal(got.uid, process.getuid!());
  t.equal(got.message, 'READY=1\nSTATUS=all good really', 'newlines in values are folded');
});

t.test('a vanished socket does not throw', async (t) => {
  const dir = tempDir(t);
  const notifier = await createNotifier({ NOTIFY_SOCKET: `${dir}/gone.sock` }, silentLogger());
  t.teardown(() => notifier.close());
  t.equal(notifier.notify({ WATCHDOG: 1 }), false);
});

t.test('watchdog interval is half of WATCHDOG_USEC, and only for our PID', async (t) => {
  const dir = tempDir(t);
  const mine = await createNotifier({ NOTIFY_SOCKET: `${dir}/n.sock`, WATCHDOG_USEC: '10000000' }, silentLogger());
  t.equal(mine.watchdogIntervalMs, 5000);
  mine.close();
  const other = await createNotifier({ NOTIFY_SOCKET: `${dir}/n.sock`, WATCHDOG_USEC: '10000000', WATCHDOG_PID: '1' }, silentLogger());
  t.equal(other.watchdogIntervalMs, undefined);
  other.close();
});

t.test('socket addresses: paths include the NUL, abstract names do not', async (t) => {
  t.equal(socketAddress('/run/systemd/notify').length, 2 + '/run/systemd/notify'.length + 1);
  const abstract = socketAddress('@sd');
  t.equal(abstract.length, 2 + 3);
  t.equal(abstract.address[2], 0);
  t.throws(() => socketAddress('relative'), /neither an absolute path/);
  t.equal(formatNotification({ A: 1, B: 'x' }), 'A=1\nB=x');
});
