/**
 * Takes a few named files out of an image's layers without unpacking anything else.
 *
 * Layers apply in order, so a file is what the last layer that mentions it says: its
 * content, or its removal by a whiteout (`.wh.<name>` beside it or beside an ancestor
 * directory, `.wh..wh..opq` in an ancestor directory, or an ancestor replaced by a
 * non-directory). As the OCI image spec says, a whiteout hides only what lower layers
 * hold, never a file of its own layer.
 *
 * Every layer is streamed through its digest check (the compressed blob) and its diff ID
 * check (the tar inside), so a layer that does not match fails the extraction even when
 * the wanted file was already written: the caller installs nothing unless every layer
 * verified. The tar is read by tar-stream (pax and GNU long names, base-256 sizes).
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { extract, type Header } from 'tar-stream';
import { verifyingStream } from './digest.ts';
import { OciError } from './errors.ts';
import type { Descriptor } from './manifest.ts';
import type { ResolvedImage } from './resolve.ts';
import type { ImageSource } from './source.ts';

export interface WantedFile {
  /** Path inside the image, without the leading slash: `usr/lib/linkerd/linkerd2-proxy`. */
  path: string;
  maxBytes: number;
  /** Write it to a new file in this directory (named `.<prefix>.<random>`); otherwise kept in memory. */
  toFile?: { dir: string; prefix: string };
}

export interface ExtractedFile {
  path: string;
  mode: number;
  size: number;
  /** The layer (0 is the first) it came from. */
  layer: number;
  /** The temporary file holding it (the caller renames or removes it), for `toFile`. */
  file?: string;
  bytes?: Buffer;
}

export interface ExtractOptions {
  signal?: AbortSignal;
  /** Called once a layer verified. */
  onLayer?(index: number, layer: Descriptor): void;
}

/** A file kept in memory is tiny (a version string). */
const MEMORY_LIMIT = 64 * 1024;

function decompressor(layer: Descriptor, what: string): Transform | undefined {
  const type = layer.mediaType;
  if (type.endsWith('+gzip') || type.endsWith('.tar.gzip')) return zlib.createGunzip();
  if (type.endsWith('+zstd')) {
    const zstd = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
    if (!zstd) throw new OciError(`${what} is zstd-compressed, which this Node.js (${process.version}) cannot decompress`, 'unsupported');
    return zstd();
  }
  if (type.endsWith('.layer.v1.tar') || type.endsWith('.tar')) return undefined;
  throw new OciError(`${what} has media type ${type}, not a tar layer`, 'unsupported');
}

/** `./usr/lib/x/` → `usr/lib/x`. */
function normalize(name: string): string {
  return name.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
}

function isAncestor(dir: string, path: string): boolean {
  return dir === '' || path.startsWith(`${dir}/`);
}

/** Whether a tar entry removes `target` as lower layers have it. */
function hides(entry: string, type: Header['type'], target: string): boolean {
  const slash = entry.lastIndexOf('/');
  const dir = slash === -1 ? '' : entry.slice(0, slash);
  const base = entry.slice(slash + 1);
  if (base === '.wh..wh..opq') return isAncestor(dir, target);
  if (base.startsWith('.wh.')) {
    const removed = dir ? `${dir}/${base.slice(4)}` : base.slice(4);
    return removed === target || isAncestor(removed, target);
  }
  // An ancestor that is now a file or a link: the path no longer leads to the old file.
  return type !== 'directory' && isAncestor(entry, target) && entry !== target;
}

interface LayerFinding {
  found?: ExtractedFile;
  hidden: boolean;
}

function discard(files: Iterable<ExtractedFile | undefined>): void {
  for (const f of files) if (f?.file) rmSync(f.file, { force: true });
}

/**
 * One layer, read through `stages` (the blob, its checks, the decompressor): what it says
 * about each wanted file. Temporary files of a failed layer are removed.
 */
async function scanLayer(stages: Array<Readable | Transform>, layer: number, wanted: WantedFile[], what: string): Promise<Map<string, LayerFinding>> {
  const findings = new Map<string, LayerFinding>(wanted.map((w) => [w.path, { hidden: false }]));
  const tar = extract();
  const reading = pipeline([...stages, tar] as unknown as ReadonlyArray<NodeJS.ReadWriteStream>);
  reading.catch(() => undefined);
  let failure: unknown;
  try {
    for await (const entry of tar) {
      const name = normalize(entry.header.name);
      const want = wanted.find((w) => w.path === name);
      for (const w of wanted) if (hides(name, entry.header.type, w.path)) findings.get(w.path)!.hidden = true;
      if (!want || entry.header.type === 'directory') {
        entry.resume();
        continue;
      }
      const finding = findings.get(name)!;
      if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
        entry.resume();
        throw new OciError(`${what}: /${name} is a ${entry.header.type}${entry.header.linkname ? ` to ${entry.header.linkname}` : ''}, not a regular file; not supported`, 'unsupported');
      }
      const size = entry.header.size ?? 0;
      if (size > want.maxBytes) {
        entry.resume();
        throw new OciError(`${what}: /${name} is ${size} bytes, more than the ${want.maxBytes} allowed`);
      }
      // A later entry for the same path in the same layer replaces the earlier one.
      discard([finding.found]);
      const base = { path: name, mode: entry.header.mode ?? 0o644, size, layer };
      if (want.toFile) {
        const file = join(want.toFile.dir, `.${want.toFile.prefix}.${randomBytes(6).toString('hex')}`);
        finding.found = { ...base, file };
        await pipeline(entry, createWriteStream(file, { mode: 0o700, flags: 'wx' }));
      } else {
        const chunks: Buffer[] = [];
        for await (const chunk of entry) chunks.push(chunk as Buffer);
        finding.found = { ...base, bytes: Buffer.concat(chunks).subarray(0, Math.min(want.maxBytes, MEMORY_LIMIT)) };
      }
    }
  } catch (err) {
    failure = err;
    stages[0]!.destroy();
  }
  // The stream's own failure (a digest mismatch, a corrupt gzip) explains more than the tar's.
  try {
    await reading;
  } catch (err) {
    failure = err instanceof OciError || !failure ? err : failure;
  }
  if (failure) {
    discard([...findings.values()].map((f) => f.found));
    throw failure instanceof OciError ? failure : new OciError(`${what}: ${(failure as Error).message}`);
  }
  return findings;
}

/**
 * The wanted files as the image's top layer sees them; absent ones are missing from the
 * map. Every layer is read and verified, in order.
 */
export async function extractFiles(source: ImageSource, image: ResolvedImage, wanted: WantedFile[], options: ExtractOptions = {}): Promise<Map<string, ExtractedFile>> {
  const result = new Map<string, ExtractedFile>();
  try {
    for (const [index, layer] of image.manifest.layers.entries()) {
      const what = `layer ${index + 1}/${image.manifest.layers.length} (${layer.digest}) of ${source.description}`;
      const decompress = decompressor(layer, what);
      const diffId = image.config.diffIds[index]!;
      if (!decompress && diffId !== layer.digest) throw new OciError(`${what} is uncompressed, so its diff ID must be its digest, but the config says ${diffId}`, 'tampered');
      const blob = await source.blob(layer, options.signal);
      const stages: Array<Readable | Transform> = [blob, verifyingStream(layer, what)];
      if (decompress) stages.push(decompress, verifyingStream({ digest: diffId }, `${what}, uncompressed (diff ID)`));
      const interrupt = () => blob.destroy(new Error('interrupted'));
      options.signal?.addEventListener('abort', interrupt, { once: true });
      let findings: Map<string, LayerFinding>;
      try {
        findings = await scanLayer(stages, index, wanted, what);
      } finally {
        options.signal?.removeEventListener('abort', interrupt);
      }
      for (const [path, finding] of findings) {
        if (finding.found) {
          discard([result.get(path)]);
          result.set(path, finding.found);
        } else if (finding.hidden && result.has(path)) {
          discard([result.get(path)]);
          result.delete(path);
        }
      }
      options.onLayer?.(index, layer);
    }
  } catch (err) {
    discard(result.values());
    throw err;
  }
  return result;
}
