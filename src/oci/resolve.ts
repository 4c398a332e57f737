/**
 * From a reference to one platform's image: the manifest (through the index when the image
 * is multi-platform) and its config, each verified against the digest that named it, and
 * the platform checked twice: the index's claim, then the config's own.
 */
import { sha256Digest, verifyBytes, verifyingStream } from './digest.ts';
import { OciError } from './errors.ts';
import {
  formatPlatform, MAX_DOCUMENT_BYTES, normalizePlatform, parseConfig, parseManifest, samePlatform,
  type Descriptor, type ImageConfig, type ImageManifest, type Platform,
} from './manifest.ts';
import { DIGEST } from './reference.ts';
import type { ImageSource } from './source.ts';

export interface ResolvedImage {
  /** The digest of the platform's manifest. */
  manifestDigest: string;
  /** The digest of the multi-platform index it was chosen from, if any. */
  indexDigest?: string;
  manifest: ImageManifest;
  config: ImageConfig;
  platform: Platform;
}

/** Indexes inside indexes are allowed, this deep. */
const MAX_DEPTH = 3;

/** A blob read whole (configs: small), verified as it streams. */
export async function readBlob(source: ImageSource, descriptor: Descriptor, what: string, signal?: AbortSignal): Promise<Buffer> {
  if (descriptor.size > MAX_DOCUMENT_BYTES) throw new OciError(`${what} is ${descriptor.size} bytes, more than the ${MAX_DOCUMENT_BYTES} allowed`);
  const chunks: Buffer[] = [];
  const stream = (await source.blob(descriptor, signal)).pipe(verifyingStream(descriptor, what));
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Attestations and signatures that buildx and cosign put in indexes are not images to run. */
function isRunnable(descriptor: Descriptor): boolean {
  const p = descriptor.platform;
  return !(p && (p.os === 'unknown' || p.architecture === 'unknown')) && descriptor.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest';
}

/**
 * Resolves `reference` (a tag or digest; with `descriptor`, the digest and size an index
 * gave) to `wanted`'s image. Throws OciError 'platform' when the image has no build for it.
 */
export async function resolveImage(
  source: ImageSource,
  start: { reference: string; descriptor?: Descriptor },
  wanted: Platform,
  signal?: AbortSignal,
  depth = 0,
): Promise<ResolvedImage> {
  const what = `${source.description}${DIGEST.test(start.reference) ? '@' : ':'}${start.reference}`;
  const fetched = await source.manifest(start.reference, signal);
  let digest: string;
  if (start.descriptor) {
    verifyBytes(fetched.bytes, start.descriptor, `manifest ${what}`);
    digest = start.descriptor.digest;
  } else if (DIGEST.test(start.reference)) {
    verifyBytes(fetched.bytes, { digest: start.reference }, `manifest ${what}`);
    digest = start.reference;
  } else if (fetched.claimedDigest && DIGEST.test(fetched.claimedDigest)) {
    // By tag, the registry's Docker-Content-Digest is all there is to check against.
    verifyBytes(fetched.bytes, { digest: fetched.claimedDigest }, `manifest ${what}`);
    digest = fetched.claimedDigest;
  } else {
    digest = sha256Digest(fetched.bytes);
  }
  const document = parseManifest(fetched.bytes, fetched.contentType, `manifest ${what}`);
  const platform = normalizePlatform(wanted);

  if (document.kind === 'index') {
    if (depth >= MAX_DEPTH) throw new OciError(`${what}: indexes nested deeper than ${MAX_DEPTH}`, 'unsupported');
    const runnable = document.manifests.filter(isRunnable);
    const chosen = runnable.find((m) => m.platform && samePlatform(m.platform, platform));
    if (!chosen) {
      const offered = runnable.map((m) => (m.platform ? formatPlatform(normalizePlatform(m.platform)) : 'unnamed platform'));
      throw new OciError(`${what} has no ${formatPlatform(platform)} image (it has ${offered.join(', ') || 'none'})`, 'platform');
    }
    const inner = await resolveImage(source, { reference: chosen.digest, descriptor: chosen }, platform, signal, depth + 1);
    return { ...inner, indexDigest: inner.indexDigest ?? digest };
  }

  const config = parseConfig(await readBlob(source, document.config, `config of ${what}`, signal), `config of ${what}`);
  // The config's own word (what the binaries were built for), whatever an index claimed.
  if (config.platform.os !== platform.os || config.platform.architecture !== platform.architecture || (config.platform.variant && !samePlatform(config.platform, platform))) {
    throw new OciError(`${what} is a ${formatPlatform(normalizePlatform(config.platform))} image, not ${formatPlatform(platform)}`, 'platform');
  }
  if (config.diffIds.length !== document.layers.length) {
    throw new OciError(`${what}: the config lists ${config.diffIds.length} layer digests for ${document.layers.length} layers`);
  }
  return { manifestDigest: digest, manifest: document, config, platform };
}
