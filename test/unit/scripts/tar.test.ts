// scripts/lib/tar.mjs writes the image's layers and archive. GNU tar must read back exactly
// what was written, including the names too long for a ustar header (prefix split, pax
// record), and the same entries must always give the same bytes.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
// @ts-expect-error: plain ESM build script without type declarations
import { TarWriter, treeEntries } from '../../../scripts/lib/tar.mjs';
import { tempDir } from '../../helpers/tmp.ts';

type Entry = { path: string; type: 'file' | 'dir' | 'symlink'; mode: number; uid?: number; gid?: number; mtime: number; data?: Buffer; linkname?: string };

const MTIME = 1_700_000_000;
const longDir = `${'d'.repeat(60)}/${'e'.repeat(60)}`; // 121 characters: ustar prefix + name
const veryLong = `${'x'.repeat(120)}/${'y'.repeat(120)}`; // a name part over 100: a pax record
const ENTRIES: Entry[] = [
  { path: 'etc', type: 'dir', mode: 0o755, mtime: MTIME },
  { path: 'etc/passwd', type: 'file', mode: 0o644, mtime: MTIME, data: Buffer.from('root:x:0:0::/:/sbin/nologin\n') },
  { path: 'home', type: 'dir', mode: 0o755, mtime: MTIME },
  { path: 'home/nonroot', type: 'dir', mode: 0o700, uid: 65532, gid: 65532, mtime: MTIME },
  { path: 'tmp', type: 'dir', mode: 0o1777, mtime: MTIME },
  { path: 'usr', type: 'dir', mode: 0o755, mtime: MTIME },
  { path: 'usr/bin', type: 'dir', mode: 0o755, mtime: MTIME },
  { path: 'usr/bin/prog', type: 'file', mode: 0o755, mtime: MTIME, data: Buffer.alloc(1500, 7) },
  { path: 'usr/bin/link', type: 'symlink', mode: 0o777, mtime: MTIME, linkname: 'prog' },
  { path: longDir.split('/')[0]!, type: 'dir', mode: 0o755, mtime: MTIME },
  { path: longDir, type: 'dir', mode: 0o755, mtime: MTIME },
  { path: `${longDir}/file`, type: 'file', mode: 0o644, mtime: MTIME, data: Buffer.from('prefix split') },
  { path: veryLong.split('/')[0]!, type: 'dir', mode: 0o755, mtime: MTIME },
  { path: veryLong, type: 'file', mode: 0o644, mtime: MTIME, data: Buffer.from('pax path') },
  { path: 'long-link', type: 'symlink', mode: 0o777, mtime: MTIME, linkname: `/${'z'.repeat(150)}` },
];

function write(file: string, entries: Entry[]): { diffId: string; size: number } {
  const tar = new TarWriter(file);
  for (const entry of entries) tar.add(entry);
  return tar.finish();
}

t.test('GNU tar reads back every entry: names, modes, owners, times, content, links', async (t) => {
  const dir = tempDir(t, 'mh-tar-');
  const file = join(dir, 'a.tar');
  const { diffId, size } = write(file, ENTRIES);
  t.equal(size, readFileSync(file).length);
  t.equal(size % 512, 0, 'whole blocks');
  t.match(diffId, /^sha256:[0-9a-f]{64}$/);

  // "mode owner size date time name": one space between fields.
  const listing = execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', file], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } })
    .trim().split('\n').map((line) => line.replace(/ +/g, ' '));
  t.same(listing.map((line) => line.split(' ').slice(5).join(' ')),
    ENTRIES.map((e) => (e.type === 'dir' ? `${e.path}/` : e.type === 'symlink' ? `${e.path} -> ${e.linkname}` : e.path)), 'names in order, long ones whole');
  t.equal(listing[3], 'drwx------ 65532/65532 0 2023-11-14 22:13:20 home/nonroot/', 'owner and time of the home directory');
  t.match(listing[4], /^drwxrwxrwt 0\/0 /, 'the sticky /tmp');

  const out = join(dir, 'x');
  mkdirSync(out);
  execFileSync('tar', ['-xf', file, '-C', out, '--numeric-owner', '--same-permissions']);
  for (const e of ENTRIES) {
    const path = join(out, e.path);
    const st = lstatSync(path);
    if (e.type === 'file') t.same(readFileSync(path), e.data, `${e.path.slice(0, 40)}: content`);
    if (e.type === 'symlink') t.equal(readlinkSync(path), e.linkname, `${e.path}: target`);
    else t.equal(st.mode & 0o7777, e.mode, `${e.path.slice(0, 40)}: mode`);
    if (e.type !== 'symlink') t.equal(st.mtimeMs / 1000, MTIME, `${e.path.slice(0, 40)}: mtime`);
  }
});

t.test('the same entries give the same bytes; treeEntries normalises a directory tree', async (t) => {
  const dir = tempDir(t, 'mh-tar-');
  t.equal(write(join(dir, 'a.tar'), ENTRIES).diffId, write(join(dir, 'b.tar'), ENTRIES).diffId);
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'b/c'), { recursive: true });
  writeFileSync(join(tree, 'b/c/run'), '#!/bin/sh\n', { mode: 0o750 });
  writeFileSync(join(tree, 'a'), 'a', { mode: 0o600 });
  writeFileSync(join(tree, 'b/tmp-file'), '');
  const entries = treeEntries(tree, MTIME, { b: { mode: 0o1777 } }) as Entry[];
  t.same(entries.map((e) => [e.path, e.type, e.mode.toString(8), e.uid, e.mtime]), [
    ['a', 'file', '644', 0, MTIME],
    ['b', 'dir', '1777', 0, MTIME],
    ['b/c', 'dir', '755', 0, MTIME],
    ['b/c/run', 'file', '755', 0, MTIME],
    ['b/tmp-file', 'file', '644', 0, MTIME],
  ], 'sorted, parents first, modes normalised, special modes kept');
});
