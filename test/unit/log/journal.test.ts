// Under systemd every log line carries its syslog priority, so journald files errors as errors.
import t from 'tap';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { isJournalStream, withPriority } from '../../../src/log/journal.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { tempDir } from '../../helpers/tmp.ts';

function capture(): { stream: Writable; lines: () => string[] } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, lines: () => text.split('\n').filter(Boolean) };
}

t.test('each JSON line starts with the priority of its level, the JSON unchanged', async (t) => {
  const out = capture();
  const log = createLogger({ level: 'trace', format: 'json', destination: out.stream, syslogPriority: true });
  const child = log.child({ component: 'iptables' });
  log.trace('t');
  log.debug('d');
  log.info('i');
  child.warn({ family: 'ipv4' }, 'w');
  log.error({ err: 'boom' }, 'e');
  log.fatal('f');
  const lines = out.lines();
  t.same(lines.map((l) => l.slice(0, 3)), ['<7>', '<7>', '<6>', '<4>', '<3>', '<2>']);
  const parsed = lines.map((l) => JSON.parse(l.slice(3)) as { msg: string; component: string; level: number });
  t.same(parsed.map((p) => p.msg), ['t', 'd', 'i', 'w', 'e', 'f']);
  t.equal(parsed[3]!.component, 'iptables', 'a child logger keeps its component');
  t.same(parsed.map((p) => p.level), [10, 20, 30, 40, 50, 60]);

  const plain = capture();
  createLogger({ level: 'info', format: 'json', destination: plain.stream }).error('e');
  t.match(plain.lines()[0], /^\{"level":50/, 'no prefix unless asked');
});

t.test('JOURNAL_STREAM is honoured only for the very file it names', async (t) => {
  const dir = tempDir(t, 'mh-journal-');
  const fd = openSync(join(dir, 'stream'), 'w');
  const other = openSync(join(dir, 'other'), 'w');
  t.teardown(() => {
    closeSync(fd);
    closeSync(other);
  });
  const st = fstatSync(fd, { bigint: true });
  const env = { JOURNAL_STREAM: `${st.dev}:${st.ino}` };
  t.equal(isJournalStream(env, fd), true);
  t.equal(isJournalStream(env, other), false, 'stderr redirected elsewhere');
  t.equal(isJournalStream({}, fd), false, 'not under systemd');
  t.equal(isJournalStream({ JOURNAL_STREAM: 'junk' }, fd), false);
});

t.test('a multi-line message gets the prefix on every line', async (t) => {
  t.equal(withPriority('mesh-harness run: invalid configuration (2 problems):\n  a\n  b\n', 3), '<3>mesh-harness run: invalid configuration (2 problems):\n<3>  a\n<3>  b\n');
});
