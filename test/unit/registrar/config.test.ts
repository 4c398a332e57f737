import t from 'tap';
import { parseRegistrarConfig, RegistrarConfigError } from '../../../src/registrar/config.ts';

function problems(raw: Record<string, unknown>): string[] {
  try {
    parseRegistrarConfig(raw);
    return [];
  } catch (err) {
    if (err instanceof RegistrarConfigError) return err.problems;
    throw err;
  }
}

t.test('limits: sane defaults, each one settable', async (t) => {
  t.same(parseRegistrarConfig({}).limits, { streamsPerConnection: 8, pendingStreamsPerIdentity: 100, maxMessageBytes: 65_536, writeInterval: 1000, writeBurst: 3 });
  t.same(parseRegistrarConfig({ limits: { writeInterval: '250ms', streamsPerConnection: 2, writeBurst: 1 } }).limits, { streamsPerConnection: 2, pendingStreamsPerIdentity: 100, maxMessageBytes: 65_536, writeInterval: 250, writeBurst: 1 });
  t.equal(parseRegistrarConfig({ limits: { writeInterval: '0s' } }).limits.writeInterval, 0, '0s writes every change');
});

t.test('limits: every bad value named with what is allowed', async (t) => {
  t.same(problems({ limits: { streamsPerConnection: 0, maxMessageBytes: 100, writeInterval: '2m', pendingStreamsPerIdentity: 1.5, writeBurst: 0, streams: 3 } }), [
    'limits.streams: unknown key (allowed: streamsPerConnection, pendingStreamsPerIdentity, maxMessageBytes, writeInterval, writeBurst)',
    'limits.writeInterval: "2m" must be a duration from "0s" to "1m" such as "1s"',
    'limits.streamsPerConnection: 0 must be a whole number from 1 to 1000',
    'limits.pendingStreamsPerIdentity: 1.5 must be a whole number from 1 to 1000000',
    'limits.maxMessageBytes: 100 must be a whole number from 4096 to 4194304',
    'limits.writeBurst: 0 must be a whole number from 1 to 100',
  ]);
  t.same(problems({ limits: [] }), ['limits: must be an object {streamsPerConnection, pendingStreamsPerIdentity, maxMessageBytes, writeInterval, writeBurst}']);
});
