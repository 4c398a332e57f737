import type { Readable } from 'node:stream';
import type { Descriptor } from './manifest.ts';

/** A manifest as fetched: its bytes (not verified yet) and what the source said it is. */
export interface FetchedManifest {
  bytes: Buffer;
  contentType?: string;
  /** The digest the source claims for it (a registry's Docker-Content-Digest), checked by the caller. */
  claimedDigest?: string;
}

/**
 * Where an image's content comes from: a registry, or an OCI image layout (a directory or
 * an unpacked archive). A source only delivers bytes; checking them against their digests
 * is the reader's job, so both sources are checked the same way.
 */
export interface ImageSource {
  /** For messages: the registry and repository, or the archive's path. */
  readonly description: string;
  /** A manifest or index by tag or digest. */
  manifest(reference: string, signal?: AbortSignal): Promise<FetchedManifest>;
  /** A blob's content, as a stream (the reader verifies it). */
  blob(descriptor: Descriptor, signal?: AbortSignal): Promise<Readable>;
}
