/**
 * Test images written as an OCI image layout (oci-layout, index.json, blobs/sha256/...),
 * the form `skopeo copy oci:DIR ...` pushes to a registry and `--from` reads. Layers are
 * gzipped tars written by the project's own tar writer (scripts/lib/tar.mjs), so the tar
 * reader under test (tar-stream) never reads its own output.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
// @ts-expect-error: plain ESM build script without type declarations
import { TarWriter } from '../../scripts/lib/tar.mjs';

export interface LayerFile {
  path: string;
  type?: 'file' | 'dir' | 'symlink';
  data?: string | Buffer;
  mode?: number;
  linkname?: string;
}

export interface TestImage {
  architecture: string;
  variant?: string;
  os?: string;
  /** Bottom first. */
  layers: LayerFile[][];
  labels?: Record<string, string>;
  /** Written uncompressed (application/vnd.oci.image.layer.v1.tar) instead of gzipped. */
  uncompressed?: boolean;
}

export interface BuiltImage {
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
}

export interface BuiltLayout {
  dir: string;
  /** The digest of what index.json points at: the multi-platform index, or the one manifest. */
  topDigest: string;
  images: BuiltImage[];
}

function digestOf(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function writeBlob(dir: string, bytes: Buffer): { digest: string; size: number } {
  const digest = digestOf(bytes);
  writeFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
  return { digest, size: bytes.length };
}

function layerTar(dir: string, files: LayerFile[]): Buffer {
  const file = join(dir, `layer-${process.pid}-${Math.random().toString(16).slice(2)}.tar`);
  const tar = new TarWriter(file) as { add(entry: Record<string, unknown>): void; finish(): unknown };
  for (const f of files) {
    const type = f.type ?? 'file';
    tar.add({ path: f.path, type, mode: f.mode ?? (type === 'dir' ? 0o755 : 0o755), mtime: 1_700_000_000, ...(type === 'file' ? { data: Buffer.from(f.data ?? '') } : {}), ...(f.linkname ? { linkname: f.linkname } : {}) });
  }
  tar.finish();
  const bytes = readFileSync(file);
  rmSync(file);
  return bytes;
}

/** A stand-in proxy: a shell script that says which build it is. */
export function standInProxy(says: string): string {
  return `#!/bin/sh\necho ${JSON.stringify(says)}\n`;
}

/** Writes `images` as a layout; more than one image (or `index: true`) makes a multi-platform index. */
export function writeLayout(dir: string, images: TestImage[], options: { refName?: string; index?: boolean } = {}): BuiltLayout {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const built: BuiltImage[] = [];
  const descriptors = images.map((image) => {
    const layers = image.layers.map((files) => {
      const tar = layerTar(dir, files);
      const blob = writeBlob(dir, image.uncompressed ? tar : gzipSync(tar));
      return { ...blob, diffId: digestOf(tar), mediaType: image.uncompressed ? 'application/vnd.oci.image.layer.v1.tar' : 'application/vnd.oci.image.layer.v1.tar+gzip' };
    });
    const platform = { os: image.os ?? 'linux', architecture: image.architecture, ...(image.variant ? { variant: image.variant } : {}) };
    const config = writeBlob(dir, Buffer.from(JSON.stringify({
      ...platform,
      config: { Entrypoint: ['/usr/lib/linkerd/linkerd2-proxy'], ...(image.labels ? { Labels: image.labels } : {}) },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    })));
    const manifest = writeBlob(dir, Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    })));
    built.push({ manifestDigest: manifest.digest, configDigest: config.digest, layerDigests: layers.map((l) => l.digest) });
    return { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, platform };
  });
  const annotations = options.refName ? { annotations: { 'org.opencontainers.image.ref.name': options.refName } } : {};
  let top;
  if (images.length > 1 || options.index) {
    const index = writeBlob(dir, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: descriptors })));
    top = { mediaType: 'application/vnd.oci.image.index.v1+json', ...index, ...annotations };
  } else {
    const { platform: _platform, ...manifest } = descriptors[0]!;
    top = { ...manifest, ...annotations };
  }
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [top] }));
  return { dir, topDigest: top.digest, images: built };
}
