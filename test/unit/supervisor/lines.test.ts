import t from 'tap';
import { parseChildLine } from '../../../src/supervisor/child-log.ts';
import { LineSplitter, type Line } from '../../../src/supervisor/lines.ts';

function split(chunks: Array<string | Buffer>, max?: number): Line[] {
  const lines: Line[] = [];
  const splitter = new LineSplitter((l) => lines.push(l), max);
  for (const c of chunks) splitter.push(c);
  splitter.end();
  return lines;
}

t.test('splits across chunks, strips CR, flushes the last partial line', async (t) => {
  t.same(split(['one\ntw', 'o\r\nthree']), [
    { text: 'one', truncated: false },
    { text: 'two', truncated: false },
    { text: 'three', truncated: false },
  ]);
});

t.test('keeps multi-byte characters split across chunks intact', async (t) => {
  const bytes = Buffer.from('grüß\n');
  t.same(split([bytes.subarray(0, 3), bytes.subarray(3)]), [{ text: 'grüß', truncated: false }]);
});

t.test('caps overlong lines and drops their rest, also when the newline comes in a later chunk', async (t) => {
  t.same(split(['abcdefgh', 'ijk\nok\n'], 5), [
    { text: 'abcde', truncated: true },
    { text: 'ok', truncated: false },
  ]);
  t.same(split(['abc', 'defgh\nok\n'], 5), [
    { text: 'abcde', truncated: true },
    { text: 'ok', truncated: false },
  ]);
});

t.test('child JSON levels map to pino levels; text falls back by stream', async (t) => {
  const line = (text: string) => ({ text, truncated: false });
  t.same(parseChildLine(line('{"level":"DEBUG","fields":{"message":"m","x":1},"target":"t"}'), 'stdout'), { level: 'debug', message: 'm', fields: { fields: { x: 1 }, target: 't' } });
  t.same(parseChildLine(line('{"level":"panic","msg":"boom","time":"x"}'), 'stdout'), { level: 'fatal', message: 'boom' });
  t.same(parseChildLine(line('{"level":"TRACE","message":"m"}'), 'stderr'), { level: 'trace', message: 'm' });
  t.same(parseChildLine(line('{"level":"loud","msg":"?"}'), 'stdout'), { level: 'info', message: '{"level":"loud","msg":"?"}' }, 'unknown level: text');
  t.same(parseChildLine(line('{broken'), 'stderr'), { level: 'warn', message: '{broken' });
  t.same(parseChildLine(line('[1,2]'), 'stdout'), { level: 'info', message: '[1,2]' });
  t.same(parseChildLine({ text: '{"level":"error"', truncated: true }, 'stdout'), { level: 'info', message: '{"level":"error"' }, 'a truncated line is never parsed');
});
