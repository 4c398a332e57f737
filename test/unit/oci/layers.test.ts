/**
 * Which version of a file an image's top layer sees: later layers win, whiteouts (a file's,
 * an ancestor's, an opaque directory) hide what lower layers hold but never a file of their
 * own layer, and a link where the file should be is refused. Images are OCI layouts
 * written by the test's own tar writer, read through the same code as a registry's.
 */
import t, { type Test } from 'tap';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { extractFiles } from '../../../src/oci/layers.ts';
import { LayoutSource } from '../../../src/oci/layout.ts';
import { resolveImage } from '../../../src/oci/resolve.ts';
import { writeLayout, type LayerFile } from '../../helpers/oci-image.ts';
import { tempDir } from '../../helpers/tmp.ts';

const TARGET = 'usr/lib/linkerd/linkerd2-proxy';
const PLATFORM = { os: 'linux', architecture: 'amd64' };

async function topLayerSees(t: Test, layers: LayerFile[][], options: { uncompressed?: boolean } = {}): Promise<string | undefined> {
  const dir = tempDir(t, 'mh-layers-');
  const layout = writeLayout(join(dir, 'image'), [{ architecture: 'amd64', layers, ...options }]);
  const source = new LayoutSource(layout.dir, 'test image');
  const image = await resolveImage(source, { reference: layout.topDigest, descriptor: source.entries[0]! }, PLATFORM);
  const out = join(dir, 'out');
  mkdirSync(out);
  const files = await extractFiles(source, image, [{ path: TARGET, maxBytes: 1024, toFile: { dir: out, prefix: 'p' } }]);
  const found = files.get(TARGET);
  t.same(readdirSync(out), found?.file ? [found.file.split('/').pop()] : [], 'only the winning copy is left on disk');
  return found?.file ? readFileSync(found.file, 'utf8') : undefined;
}

const file = (data: string, path = TARGET): LayerFile => ({ path, data });
const wh = (path: string): LayerFile => ({ path, data: '' });

t.test('the last layer that has the file wins', async (t) => {
  t.equal(await topLayerSees(t, [[file('one')], [file('two')], [{ path: 'etc/other', data: 'x' }]]), 'two');
  t.equal(await topLayerSees(t, [[file('first'), file('second')]]), 'second', 'within a layer, the later entry');
  t.equal(await topLayerSees(t, [[{ path: `./${TARGET}`, data: 'dot-slash' }]]), 'dot-slash', './ prefixes are the same path');
  t.equal(await topLayerSees(t, [[file('raw')], [file('raw2')]], { uncompressed: true }), 'raw2', 'uncompressed layers');
  t.equal(await topLayerSees(t, [[{ path: 'etc/x', data: 'y' }]]), undefined, 'absent');
});

t.test('whiteouts hide lower layers', async (t) => {
  t.equal(await topLayerSees(t, [[file('old')], [wh('usr/lib/linkerd/.wh.linkerd2-proxy')]]), undefined, "the file's whiteout");
  t.equal(await topLayerSees(t, [[file('old')], [wh('usr/lib/.wh.linkerd')]]), undefined, "an ancestor's whiteout");
  t.equal(await topLayerSees(t, [[file('old')], [wh('usr/lib/linkerd/.wh..wh..opq')]]), undefined, 'an opaque directory');
  t.equal(await topLayerSees(t, [[file('old')], [wh('usr/.wh..wh..opq')]]), undefined, 'an opaque ancestor');
  t.equal(await topLayerSees(t, [[file('old')], [{ path: 'usr/lib/linkerd', data: 'now a file' }]]), undefined, 'an ancestor replaced by a file');
  t.equal(await topLayerSees(t, [[file('old')], [wh('usr/lib/linkerd/.wh.linkerd2-proxy-version.txt')]]), 'old', "another file's whiteout");
  t.equal(await topLayerSees(t, [[file('old')], [wh('usr/lib/.wh.linkerd-other')]]), 'old', 'a sibling with a common prefix');
  t.equal(await topLayerSees(t, [[file('old')], [wh('usr/lib/linkerd/.wh..wh..opq'), file('new')]]), 'new', 'a whiteout never hides a file of its own layer (before it)');
  t.equal(await topLayerSees(t, [[file('old')], [file('new'), wh('usr/lib/linkerd/.wh.linkerd2-proxy')]]), 'new', '(or after it)');
  t.equal(await topLayerSees(t, [[file('old')], [wh('usr/lib/linkerd/.wh.linkerd2-proxy')], [file('again')]]), 'again', 'a later layer brings it back');
});

t.test('a link where the file should be is refused; so is an oversized file', async (t) => {
  await t.rejects(topLayerSees(t, [[{ path: TARGET, type: 'symlink', linkname: '/bin/sh' }]]), { message: /is a symlink to \/bin\/sh, not a regular file/ });
  await t.rejects(topLayerSees(t, [[file('x'.repeat(2048))]]), { message: /is 2048 bytes, more than the 1024 allowed/ });
});
