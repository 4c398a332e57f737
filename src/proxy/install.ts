/**
 * `mesh-harness proxy install`: linkerd2-proxy out of Linkerd's proxy image, from a
 * registry or an OCI archive, onto this machine.
 *
 * Only the binary (and the small version file beside it) is taken out of the image; every
 * blob is verified on the way (src/oci), the binary must be built for this machine, and it
 * replaces the installed one atomically: written under a temporary name in the same
 * directory, synced, then renamed over it, with its install record beside it. A failure
 * or an interruption at any point leaves the installed proxy as it was and no stray file.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { OciError } from '../oci/errors.ts';
import { extractFiles } from '../oci/layers.ts';
import { openLayout, REF_NAME, type LayoutSource } from '../oci/layout.ts';
import { formatPlatform, normalizePlatform, samePlatform, type Descriptor, type Platform } from '../oci/manifest.ts';
import { isTag, parseReference, ReferenceError, type ImageReference } from '../oci/reference.ts';
import { RegistrySource } from '../oci/registry.ts';
import { resolveImage, type ResolvedImage } from '../oci/resolve.ts';
import type { RegistryCredentials } from '../oci/credentials.ts';
import type { ImageSource } from '../oci/source.ts';
import { harnessVersion } from '../util/version.ts';
import { installRecordPath, PROXY_IMAGE_BINARY, PROXY_IMAGE_VERSION_FILE, readInstalledProxy, sha256File, type ProxyInstallRecord } from './install-record.ts';

/** linkerd2-proxy is tens of MiB; a file far larger is not it (and must not fill the disk). */
const MAX_BINARY_BYTES = 512 * 1024 * 1024;
const OCI_VERSION_LABEL = 'org.opencontainers.image.version';

export type ProxyImageSource =
  | { kind: 'registry'; reference: ImageReference; text: string; credentials?: RegistryCredentials; plainHttp?: boolean }
  | { kind: 'oci-layout'; path: string };

export interface InstallProxyOptions {
  source: ProxyImageSource;
  /** The binary's path; its install record goes beside it. */
  destination: string;
  platform: Platform;
  signal?: AbortSignal;
  /** Progress, one line at a time, for the operator. */
  progress?: (line: string) => void;
  now?: () => Date;
  /** Install even when the destination already holds this image's binary, as recorded and unaltered. */
  force?: boolean;
}

/** The record of the proxy at the destination; installed is false when it already was that image's and nothing was written. */
export interface InstallProxyResult {
  record: ProxyInstallRecord;
  installed: boolean;
}

/** ELF e_machine of each architecture (elf.h): a binary for another machine is refused, whatever the image claimed. */
const ELF_MACHINE: Record<string, number> = { amd64: 62, arm64: 183, arm: 40, '386': 3, ppc64le: 21, s390x: 22, riscv64: 243, loong64: 258 };

/** The architecture an ELF file is built for, as an e_machine number; undefined for a non-ELF file. */
export function elfMachine(path: string): number | undefined {
  const header = Buffer.alloc(20);
  const fd = openSync(path, 'r');
  try {
    if (readSync(fd, header, 0, 20, 0) < 20) return undefined;
  } finally {
    closeSync(fd);
  }
  if (header.readUInt32BE(0) !== 0x7f454c46) return undefined;
  return header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
}

function elfName(machine: number): string {
  return Object.entries(ELF_MACHINE).find(([, m]) => m === machine)?.[0] ?? `ELF machine ${machine}`;
}

/** A ref.name annotation is a tag (skopeo, buildah) or a whole reference (docker save); the tag is the version. */
function tagOf(refName: string | undefined): string {
  if (!refName) return '';
  if (isTag(refName)) return refName;
  try {
    return parseReference(refName).tag ?? '';
  } catch (err) {
    if (err instanceof ReferenceError) return '';
    throw err;
  }
}

/** Which of a layout's images to take: its only one, or, when index.json lists one per platform, this platform's. */
function layoutEntry(layout: LayoutSource, platform: Platform): Descriptor {
  const entries = layout.entries;
  if (entries.length === 1) return entries[0]!;
  if (entries.every((e) => e.platform)) {
    const chosen = entries.find((e) => samePlatform(e.platform!, platform));
    if (chosen) return chosen;
    throw new OciError(`${layout.description} has no ${formatPlatform(platform)} image (it has ${entries.map((e) => formatPlatform(normalizePlatform(e.platform!))).join(', ')})`, 'platform');
  }
  const names = entries.map((e) => e.annotations?.[REF_NAME] ?? e.digest);
  throw new OciError(`${layout.description} holds ${entries.length} images (${names.join(', ')}); export only the proxy image into it`);
}

/** Flushes a file ('r+') or a directory ('r') to disk. */
function fsyncPath(path: string, flags: 'r' | 'r+'): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export async function installProxy(options: InstallProxyOptions): Promise<InstallProxyResult> {
  const { destination, signal } = options;
  const say = options.progress ?? (() => undefined);
  const platform = normalizePlatform(options.platform);
  let source: ImageSource;
  let close = () => undefined as void;
  let start: { reference: string; descriptor?: Descriptor };
  let version: string;
  if (options.source.kind === 'registry') {
    const { reference, credentials, plainHttp } = options.source;
    source = new RegistrySource(reference, { ...(credentials ? { credentials } : {}), ...(plainHttp ? { plainHttp } : {}), userAgent: `mesh-harness/${harnessVersion()}` });
    start = { reference: reference.digest ?? reference.tag ?? 'latest' };
    version = reference.tag && reference.tag !== 'latest' ? reference.tag : '';
  } else {
    const layout = await openLayout(options.source.path, signal);
    close = layout.close;
    source = layout.source;
    const entry = layoutEntry(layout.source, platform);
    start = { reference: entry.digest, descriptor: entry };
    version = tagOf(entry.annotations?.[REF_NAME]);
  }

  try {
    const image: ResolvedImage = await resolveImage(source, start, platform, signal);
    say(`${formatPlatform(image.platform)} image ${image.manifestDigest}${image.indexDigest ? ` (from index ${image.indexDigest})` : ''}: ${image.manifest.layers.length} layers`);
    version ||= image.config.labels[OCI_VERSION_LABEL] ?? '';
    // The same image's binary, as its record says and its sha256 confirms: nothing to pull or
    // write, so configuration management can run this on every pass. A binary changed by hand
    // no longer matches its record and is replaced.
    if (!options.force) {
      const present = await readInstalledProxy(destination);
      if (present.state === 'recorded' && present.record.manifestDigest === image.manifestDigest && present.record.version === version) {
        return { record: present.record, installed: false };
      }
    }

    const dir = dirname(destination);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw new OciError(`cannot create ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; run as root, or pass --dest DIR`, 'failed');
    }
    const prefix = `${basename(destination)}.install`;
    let files;
    try {
      files = await extractFiles(source, image, [
        { path: PROXY_IMAGE_BINARY, maxBytes: MAX_BINARY_BYTES, toFile: { dir, prefix } },
        { path: PROXY_IMAGE_VERSION_FILE, maxBytes: 256 },
      ], { ...(signal ? { signal } : {}), onLayer: (i, layer) => say(`layer ${i + 1}/${image.manifest.layers.length} ${layer.digest} verified (${(layer.size / 1048576).toFixed(1)} MiB)`) });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw new OciError(`cannot write in ${dir} (${code}); run as root, or pass --dest DIR`, 'failed');
      throw err;
    }
    const binary = files.get(PROXY_IMAGE_BINARY);
    if (!binary?.file) {
      throw new OciError(`${source.description} has no /${PROXY_IMAGE_BINARY}: is it Linkerd's proxy image (cr.l5d.io/linkerd/proxy)?`, 'invalid');
    }
    const temp = binary.file;
    const recordTemp = `${temp}.json`;
    try {
      const machine = elfMachine(temp);
      const expected = ELF_MACHINE[platform.architecture];
      if (machine !== undefined && expected !== undefined && machine !== expected) {
        throw new OciError(`/${PROXY_IMAGE_BINARY} in ${source.description} is built for ${elfName(machine)}, not ${platform.architecture}, whatever its manifest says`, 'platform');
      }
      chmodSync(temp, 0o755);
      fsyncPath(temp, 'r+');
      const proxyVersion = files.get(PROXY_IMAGE_VERSION_FILE)?.bytes?.toString('utf8').trim().split('\n')[0]?.slice(0, 64);
      const record: ProxyInstallRecord = {
        schemaVersion: 1,
        binary: destination,
        sha256: await sha256File(temp),
        size: binary.size,
        source: options.source.kind === 'registry' ? options.source.text : options.source.path,
        sourceKind: options.source.kind,
        version,
        ...(proxyVersion && /^[\w.+-]+$/.test(proxyVersion) ? { proxyVersion } : {}),
        manifestDigest: image.manifestDigest,
        ...(image.indexDigest ? { indexDigest: image.indexDigest } : {}),
        platform: formatPlatform(image.platform),
        installedAt: (options.now ?? (() => new Date()))().toISOString(),
        installedBy: harnessVersion(),
      };
      writeFileSync(recordTemp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644, flag: 'wx' });
      fsyncPath(recordTemp, 'r+');
      if (signal?.aborted) throw new OciError('interrupted; nothing was installed', 'failed');
      // The binary first: a crash between the two renames leaves a record that no longer
      // matches the binary, which readers report as changed, never a wrong version.
      renameSync(temp, destination);
      renameSync(recordTemp, installRecordPath(destination));
      fsyncPath(dir, 'r');
      return { record, installed: true };
    } finally {
      rmSync(temp, { force: true });
      rmSync(recordTemp, { force: true });
    }
  } finally {
    close();
  }
}

