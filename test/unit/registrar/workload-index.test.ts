import t from 'tap';
import { WorkloadIndex } from '../../../src/registrar/workload-index.ts';

const fleet = WorkloadIndex.key('shop', 'web', 'spiffe://example.org/vm/web');
const other = WorkloadIndex.key('shop', 'api', 'spiffe://example.org/vm/web');

t.test('a name filed by the store and by a session counts once; the name asked about is left out', async (t) => {
  const index = new WorkloadIndex();
  index.set('stored', 'shop/a', fleet);
  index.set('session', 'shop/a', fleet);
  index.set('session', 'shop/b', fleet);
  t.equal(index.countOthers(fleet, 'shop/c'), 2);
  t.equal(index.countOthers(fleet, 'shop/a'), 1);
  t.same(index.others(fleet, 'shop/a', 5), ['shop/b']);
  t.equal(index.countOthers(other, 'shop/c'), 0);
});

t.test('a name stays counted while either source files it, and moves with its key', async (t) => {
  const index = new WorkloadIndex();
  index.set('stored', 'shop/a', fleet);
  index.set('session', 'shop/a', fleet);
  index.set('session', 'shop/a', undefined);
  t.equal(index.countOthers(fleet, 'shop/x'), 1, 'still in the store');
  index.set('stored', 'shop/a', other);
  t.equal(index.countOthers(fleet, 'shop/x'), 0);
  t.equal(index.countOthers(other, 'shop/x'), 1);
  index.set('stored', 'shop/a', undefined);
  t.equal(index.countOthers(other, 'shop/x'), 0);
});

t.test('retain drops only what the given source filed', async (t) => {
  const index = new WorkloadIndex();
  index.set('stored', 'shop/a', fleet);
  index.set('stored', 'shop/b', fleet);
  index.set('session', 'shop/b', fleet);
  index.retain('stored', () => false);
  t.equal(index.countOthers(fleet, 'shop/x'), 1, 'the session still holds shop/b');
  t.same(index.others(fleet, 'shop/x', 5), ['shop/b']);
});

t.test('others lists at most the limit', async (t) => {
  const index = new WorkloadIndex();
  for (let i = 0; i < 10; i += 1) index.set('session', `shop/n${i}`, fleet);
  t.equal(index.others(fleet, 'shop/n0', 3).length, 3);
  t.notOk(index.others(fleet, 'shop/n0', 20).includes('shop/n0'));
  t.equal(index.countOthers(fleet, 'shop/n0'), 9);
});
