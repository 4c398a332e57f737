/**
 * Content addressing: every byte taken from a registry or an archive is checked against
 * the digest and size that named it, as it streams, so nothing is trusted for being
 * served over TLS or for sitting in a file.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { OciError } from './errors.ts';

/** sha256 or sha512, as digests name them. */
function hashFor(digest: string): Hash {
  const algorithm = digest.slice(0, digest.indexOf(':'));
  if (algorithm !== 'sha256' && algorithm !== 'sha512') throw new OciError(`digest ${digest}: unsupported algorithm ${JSON.stringify(algorithm)}`);
  return createHash(algorithm);
}

export function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Throws unless `bytes` are what `digest` names (and `size` when given). */
export function verifyBytes(bytes: Buffer, expected: { digest: string; size?: number }, what: string): void {
  if (expected.size !== undefined && bytes.length !== expected.size) {
    throw new OciError(`${what}: ${bytes.length} bytes where ${expected.digest} has ${expected.size}`, 'tampered');
  }
  const actual = `${expected.digest.slice(0, expected.digest.indexOf(':'))}:${hashFor(expected.digest).update(bytes).digest('hex')}`;
  if (actual !== expected.digest) throw new OciError(`${what}: the content has digest ${actual}, not ${expected.digest}`, 'tampered');
}

/**
 * A pass-through that fails the stream when the content is longer than `size` (at once,
 * so an endless body stops), or when it ends shorter or with another digest.
 */
export function verifyingStream(expected: { digest: string; size?: number }, what: string): Transform {
  const hash = hashFor(expected.digest);
  const algorithm = expected.digest.slice(0, expected.digest.indexOf(':'));
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      if (expected.size !== undefined && seen > expected.size) {
        callback(new OciError(`${what}: more than the ${expected.size} bytes ${expected.digest} has`, 'tampered'));
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      if (expected.size !== undefined && seen !== expected.size) {
        callback(new OciError(`${what}: ${seen} bytes where ${expected.digest} has ${expected.size}`, 'tampered'));
        return;
      }
      const actual = `${algorithm}:${hash.digest('hex')}`;
      callback(actual === expected.digest ? null : new OciError(`${what}: the content has digest ${actual}, not ${expected.digest}`, 'tampered'));
    },
  });
}
