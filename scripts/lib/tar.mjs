// A deterministic tar writer: POSIX ustar headers (pax records only for names too long
// for ustar), entries in the order given, every field from the entry and nothing from the
// build host (no user names, no atime/ctime, no device numbers). Container layers and the
// OCI archive are written with it, so the bytes depend on the content only and no root or
// particular GNU tar is needed to build them.
import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readFileSync, readdirSync, readlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const BLOCK = 512;
const TYPE = { file: '0', symlink: '2', dir: '5', pax: 'x' };

/**
 * @typedef {{ path: string, type: 'file' | 'dir' | 'symlink', mode: number, uid?: number, gid?: number,
 *             mtime: number, data?: Buffer, source?: string, linkname?: string }} TarEntry
 * path: relative, no leading "/" or "./", directories without a trailing "/";
 * the content of a file is `data`, or the file at `source`.
 */

function octal(value, width) {
  const text = value.toString(8);
  if (text.length > width - 1) throw new Error(`tar: ${value} does not fit a ${width}-byte field`);
  return `${text.padStart(width - 1, '0')}\0`;
}

function header({ name, prefix = '', type, mode, uid, gid, size, mtime, linkname = '' }) {
  const block = Buffer.alloc(BLOCK);
  const put = (text, offset, width) => {
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length > width) throw new Error(`tar: "${text}" does not fit a ${width}-byte field`);
    bytes.copy(block, offset);
  };
  put(name, 0, 100);
  put(octal(mode, 8), 100, 8);
  put(octal(uid, 8), 108, 8);
  put(octal(gid, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(mtime, 12), 136, 12);
  put('        ', 148, 8);
  put(type, 156, 1);
  put(linkname, 157, 100);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  put(prefix, 345, 155);
  let sum = 0;
  for (const byte of block) sum += byte;
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return block;
}

/** One pax record, "<len> key=value\n", where len counts the whole record. */
function paxRecord(key, value) {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

/** ustar's name/prefix split, or undefined when the name needs a pax record. */
function splitName(name) {
  if (Buffer.byteLength(name) <= 100) return { name, prefix: '' };
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest.length > 0) return { name: rest, prefix };
  }
  return undefined;
}

export class TarWriter {
  /** Writes to `file`; `sha256()` is the digest of everything written (a layer's DiffID). */
  constructor(file) {
    this.fd = openSync(file, 'w');
    this.hash = createHash('sha256');
    this.size = 0;
  }

  write(buffer) {
    writeSync(this.fd, buffer);
    this.hash.update(buffer);
    this.size += buffer.length;
  }

  pad(length) {
    const rest = length % BLOCK;
    if (rest) this.write(Buffer.alloc(BLOCK - rest));
  }

  /** @param {TarEntry} entry */
  add(entry) {
    const data = entry.type === 'file' ? (entry.data ?? readFileSync(entry.source)) : Buffer.alloc(0);
    const name = entry.type === 'dir' ? `${entry.path}/` : entry.path;
    const linkname = entry.linkname ?? '';
    const fields = { type: TYPE[entry.type], mode: entry.mode, uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtime: entry.mtime };
    let split = splitName(name);
    const pax = [];
    if (!split) {
      pax.push(paxRecord('path', name));
      split = { name: Buffer.from(name).subarray(0, 100).toString('utf8').replace(/\uFFFD+$/, ''), prefix: '' };
    }
    if (Buffer.byteLength(linkname) > 100) pax.push(paxRecord('linkpath', linkname));
    if (pax.length) {
      const body = Buffer.from(pax.join(''));
      this.write(header({ name: `PaxHeaders/${split.name}`.slice(0, 100), type: TYPE.pax, mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: entry.mtime }));
      this.write(body);
      this.pad(body.length);
    }
    this.write(header({ ...fields, ...split, size: data.length, linkname: Buffer.byteLength(linkname) > 100 ? '' : linkname }));
    if (data.length) {
      this.write(data);
      this.pad(data.length);
    }
  }

  /** The two zero blocks that end an archive; returns the DiffID and size. */
  finish() {
    this.write(Buffer.alloc(2 * BLOCK));
    closeSync(this.fd);
    return { diffId: `sha256:${this.hash.digest('hex')}`, size: this.size };
  }
}

/**
 * The entries of a directory tree, sorted by path (every directory before its content):
 * directories and executables 0755, other files 0644, owned by root, all at `mtime`.
 * `special` maps a path to the mode/uid/gid it keeps instead (/tmp 1777, a home directory).
 * @returns {TarEntry[]}
 */
export function treeEntries(dir, mtime, special = {}) {
  const entries = [];
  const visit = (rel) => {
    for (const name of readdirSync(rel ? join(dir, rel) : dir).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const full = join(dir, path);
      const st = lstatSync(full);
      const base = { path, mtime, uid: 0, gid: 0 };
      if (st.isDirectory()) entries.push({ ...base, type: 'dir', mode: 0o755, ...special[path] });
      else if (st.isSymbolicLink()) entries.push({ ...base, type: 'symlink', mode: 0o777, linkname: readlinkSync(full) });
      else if (st.isFile()) entries.push({ ...base, type: 'file', mode: st.mode & 0o111 ? 0o755 : 0o644, source: full, ...special[path] });
      else throw new Error(`tar: ${full} is neither a file, a directory nor a symbolic link`);
      if (st.isDirectory()) visit(path);
    }
  };
  visit('');
  return entries;
}
