/**
 * OCI image layouts, for hosts that cannot reach a registry: a directory (`skopeo copy ...
 * oci:DIR`) or an archive of one (`oci-archive:FILE`, also what `docker save` writes since
 * Docker 25), optionally gzipped. An archive is unpacked into a private temporary
 * directory first; only `oci-layout`, `index.json` and `blobs/<algorithm>/<hex>` are taken
 * from it, under names this code builds, never under the archive's own. The content is
 * then read and verified exactly as a registry's would be.
 */
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { OciError } from './errors.ts';
import { MAX_DOCUMENT_BYTES, descriptorOf, type Descriptor } from './manifest.ts';
import { DIGEST } from './reference.ts';
import type { FetchedManifest, ImageSource } from './source.ts';

const BLOB_PATH = /^blobs\/(sha256\/[a-f0-9]{64}|sha512\/[a-f0-9]{128})$/;
/** The annotation skopeo, buildah and docker give an image's entry in index.json: its tag. */
export const REF_NAME = 'org.opencontainers.image.ref.name';

export class LayoutSource implements ImageSource {
  readonly description: string;
  /** index.json's entries: each an image (a manifest or a multi-platform index). */
  readonly entries: Descriptor[];

  constructor(
    private readonly dir: string,
    description: string,
  ) {
    this.description = description;
    const layout = join(dir, 'oci-layout');
    if (!existsSync(layout)) {
      const hint = existsSync(join(dir, 'manifest.json')) ? ' (it looks like a docker save archive of Docker 24 or older: convert it with skopeo copy docker-archive:FILE oci-archive:OUT)' : '';
      throw new OciError(`${description} is not an OCI image layout: it has no oci-layout file${hint}`);
    }
    const index = this.readDocument(join(dir, 'index.json'), 'index.json');
    let doc: unknown;
    try {
      doc = JSON.parse(index.toString('utf8'));
    } catch (err) {
      throw new OciError(`${description}: index.json is not JSON: ${(err as Error).message}`);
    }
    const manifests = (doc as { manifests?: unknown } | null)?.manifests;
    if (!Array.isArray(manifests) || manifests.length === 0) throw new OciError(`${description}: index.json lists no image`);
    this.entries = manifests.map((m, i) => descriptorOf(m, `${description} index.json manifests[${i}]`));
  }

  /** The layout's blobs are content-addressed: a manifest is asked for by digest only. */
  async manifest(reference: string): Promise<FetchedManifest> {
    if (!DIGEST.test(reference)) throw new OciError(`${this.description}: a manifest is found by digest, not by ${JSON.stringify(reference)}`);
    return { bytes: this.readDocument(this.blobPath(reference), `manifest ${reference}`) };
  }

  async blob(descriptor: Descriptor): Promise<Readable> {
    const path = this.blobPath(descriptor.digest);
    if (!existsSync(path)) throw new OciError(`${this.description} lacks blob ${descriptor.digest}`, 'not-found');
    return createReadStream(path);
  }

  private blobPath(digest: string): string {
    const [algorithm, hex] = digest.split(':');
    return join(this.dir, 'blobs', algorithm!, hex!);
  }

  private readDocument(path: string, what: string): Buffer {
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      throw new OciError(`${this.description} lacks ${what}`, 'not-found');
    }
    if (size > MAX_DOCUMENT_BYTES) throw new OciError(`${this.description}: ${what} is ${size} bytes, more than a manifest may have`);
    return readFileSync(path);
  }
}

/** An OCI layout from a directory, or from an archive unpacked into a temporary directory (removed by `close`). */
export async function openLayout(path: string, signal?: AbortSignal): Promise<{ source: LayoutSource; close(): void }> {
  let stat;
  try {
    stat = statSync(path);
  } catch (err) {
    throw new OciError(`${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, 'not-found');
  }
  if (stat.isDirectory()) return { source: new LayoutSource(path, path), close: () => undefined };
  const dir = mkdtempSync(join(tmpdir(), 'mesh-harness-oci-'));
  const close = () => rmSync(dir, { recursive: true, force: true });
  try {
    await unpackArchive(path, dir, signal);
    return { source: new LayoutSource(dir, path), close };
  } catch (err) {
    close();
    throw err;
  }
}

async function isGzip(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(2), 0, 2, 0);
    return bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

async function unpackArchive(path: string, dir: string, signal?: AbortSignal): Promise<void> {
  const tar = extract();
  const options = signal ? { signal } : {};
  const reading = (await isGzip(path)) ? pipeline(createReadStream(path), createGunzip(), tar, options) : pipeline(createReadStream(path), tar, options);
  const unpacking = reading.catch((err: Error) => {
    throw new OciError(`${path} is not a readable tar archive: ${err.message}`);
  });
  unpacking.catch(() => undefined);
  let taken = 0;
  try {
    for await (const entry of tar) {
      const name = entry.header.name.replace(/^(\.\/|\/)+/, '');
      const blob = BLOB_PATH.exec(name);
      const kept = name === 'oci-layout' || name === 'index.json' ? name : blob ? `blobs/${blob[1]}` : undefined;
      if (kept && (entry.header.type === 'file' || entry.header.type === 'contiguous-file')) {
        const target = join(dir, kept);
        mkdirSync(join(target, '..'), { recursive: true, mode: 0o700 });
        await pipeline(entry, createWriteStream(target, { mode: 0o600 }));
        taken += 1;
      } else {
        entry.resume();
      }
    }
  } catch (err) {
    await unpacking.catch(() => undefined);
    throw err instanceof OciError ? err : new OciError(`${path} is not a readable tar archive: ${(err as Error).message}`);
  }
  await unpacking;
  if (taken === 0) throw new OciError(`${path} holds no OCI image layout (no oci-layout, index.json or blobs/)`);
}
