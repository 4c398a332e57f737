/**
 * The JSON documents of an image (OCI image spec and Docker's v2 schema 2, which registries
 * still serve): the index (one manifest per platform), the manifest (a config and layers)
 * and the config (platform and the layers' uncompressed digests). All of it comes from the
 * network or an operator's file, so every field used is checked before it is.
 */
import { DIGEST } from './reference.ts';
import { OciError } from './errors.ts';

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

/** What a manifest request accepts, best first. */
export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].join(', ');

/** Manifests and configs are small; distribution itself refuses manifests over 4 MiB. */
export const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  kind: 'index';
  manifests: Descriptor[];
}

export interface ImageManifest {
  kind: 'manifest';
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageConfig {
  platform: Platform;
  /** rootfs.diff_ids: the digest of each layer once decompressed. */
  diffIds: string[];
  labels: Record<string, string>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function parseJson(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new OciError(`${what} is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(value)) throw new OciError(`${what} is not a JSON object`);
  return value;
}

function stringMap(value: unknown): Record<string, string> | undefined {
  if (!isObject(value)) return undefined;
  return Object.fromEntries(Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

function platformOf(value: unknown): Platform | undefined {
  if (!isObject(value) || typeof value['os'] !== 'string' || typeof value['architecture'] !== 'string') return undefined;
  return { os: value['os'], architecture: value['architecture'], ...(typeof value['variant'] === 'string' && value['variant'] ? { variant: value['variant'] } : {}) };
}

export function descriptorOf(value: unknown, what: string): Descriptor {
  if (!isObject(value)) throw new OciError(`${what} is not a descriptor object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string' || mediaType === '') throw new OciError(`${what} has no mediaType`);
  if (typeof digest !== 'string' || !DIGEST.test(digest)) throw new OciError(`${what}: ${JSON.stringify(String(digest).slice(0, 80))} is not a sha256 or sha512 digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new OciError(`${what}: size ${JSON.stringify(size)} is not a byte count`);
  if (Array.isArray(value['urls']) && value['urls'].length > 0) throw new OciError(`${what} is a foreign layer (served from ${JSON.stringify(value['urls'][0])}, outside the registry); not supported`, 'unsupported');
  const platform = platformOf(value['platform']);
  const annotations = stringMap(value['annotations']);
  return { mediaType, digest, size, ...(platform ? { platform } : {}), ...(annotations ? { annotations } : {}) };
}

/** An index or a manifest, told apart by its mediaType (the body's, else the response's), else by its shape. */
export function parseManifest(bytes: Buffer, contentType: string | undefined, what: string): ImageIndex | ImageManifest {
  const doc = parseJson(bytes, what);
  if (doc['schemaVersion'] !== 2) {
    throw new OciError(`${what} has schemaVersion ${JSON.stringify(doc['schemaVersion'])}; only schema 2 (OCI, Docker v2.2) is supported: push the image again with a current tool`, 'unsupported');
  }
  const mediaType = typeof doc['mediaType'] === 'string' ? doc['mediaType'] : (contentType ?? '').split(';')[0]!.trim();
  const isIndex = mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerList || (!mediaType.includes('manifest.v') && Array.isArray(doc['manifests']) && !('layers' in doc));
  if (isIndex) {
    if (!Array.isArray(doc['manifests'])) throw new OciError(`${what} is an index without "manifests"`);
    return { kind: 'index', manifests: doc['manifests'].map((m, i) => descriptorOf(m, `${what} manifests[${i}]`)) };
  }
  if (mediaType && mediaType !== MEDIA.ociManifest && mediaType !== MEDIA.dockerManifest && mediaType !== 'application/json') {
    throw new OciError(`${what} has media type ${mediaType}, not an image index or manifest`, 'unsupported');
  }
  if (!Array.isArray(doc['layers'])) throw new OciError(`${what} is a manifest without "layers"`);
  return {
    kind: 'manifest',
    config: descriptorOf(doc['config'], `${what} config`),
    layers: doc['layers'].map((l, i) => descriptorOf(l, `${what} layers[${i}]`)),
  };
}

export function parseConfig(bytes: Buffer, what: string): ImageConfig {
  const doc = parseJson(bytes, what);
  const platform = platformOf(doc);
  if (!platform) throw new OciError(`${what} does not name its os and architecture`);
  const rootfs = doc['rootfs'];
  const diffIds = isObject(rootfs) && Array.isArray(rootfs['diff_ids']) ? rootfs['diff_ids'] : undefined;
  if (!diffIds || !diffIds.every((d): d is string => typeof d === 'string' && DIGEST.test(d))) throw new OciError(`${what} has no valid rootfs.diff_ids`);
  const config = doc['config'];
  return { platform, diffIds, labels: (isObject(config) ? stringMap(config['Labels']) : undefined) ?? {} };
}

/** Go's names for Node's process.arch values (what image platforms use). */
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };

/** This machine's platform as images name it. */
export function hostPlatform(): Platform {
  return normalizePlatform({ os: 'linux', architecture: GOARCH[process.arch] ?? process.arch });
}

/** containerd's defaults: arm64 means arm64/v8, arm means arm/v7. */
export function normalizePlatform(platform: Platform): Platform {
  const variant = platform.variant || (platform.architecture === 'arm64' ? 'v8' : platform.architecture === 'arm' ? 'v7' : undefined);
  return { os: platform.os, architecture: platform.architecture, ...(variant ? { variant } : {}) };
}

/** `linux/amd64`, `linux/arm/v7`. */
export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

export function samePlatform(a: Platform, b: Platform): boolean {
  return formatPlatform(normalizePlatform(a)) === formatPlatform(normalizePlatform(b));
}

/** `amd64`, `arm64/v8`, `linux/arm/v7` as a platform; throws on anything else. */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts[0] === 'linux') parts.shift();
  const [architecture, variant, ...rest] = parts;
  if (!architecture || rest.length || !/^[a-z0-9]+$/.test(architecture) || (variant !== undefined && !/^v[0-9]+$/.test(variant))) {
    throw new OciError(`"${text}" is not an architecture such as amd64, arm64 or arm/v7`);
  }
  return normalizePlatform({ os: 'linux', architecture, ...(variant ? { variant } : {}) });
}
