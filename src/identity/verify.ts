/**
 * X.509-SVID validation against the mesh trust anchors. The SPIRE agent hands out whatever
 * its server signed; the harness checks that it chains to the anchors the proxy will be
 * given, so a SPIRE setup that does not chain to the Linkerd trust anchor is caught here
 * with a readable reason instead of as TLS failures later.
 */
import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import type { X509Svid } from './workload-api-client.ts';

export type SvidVerification = { ok: true; spiffeId: string; serial: string; notBefore: Date; notAfter: Date } | { ok: false; reason: string };

export interface VerifyOptions {
  anchors: X509Certificate[];
  expectedId: string;
  now: Date;
  /** Where the anchors came from (a file path), named in failure reasons. */
  anchorsSource?: string;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Parses a PEM bundle of trust anchors; throws an Error naming `source` when it holds none or a bad one. */
export function parseTrustAnchors(pem: string, source: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) {
    throw new Error(`trust anchors ${source}: no PEM certificate found; put the mesh trust anchor (the Linkerd identity trust root) there in PEM form`);
  }
  return blocks.map((block, index) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (err) {
      throw new Error(`trust anchors ${source}: certificate ${index + 1} cannot be parsed (${(err as Error).message}); replace it with the PEM trust anchor`);
    }
    if (!cert.ca) throw new Error(`trust anchors ${source}: certificate ${index + 1} (${distinguishedName(cert.subject)}) is not a CA certificate; trust anchors must be CA roots`);
    return cert;
  });
}

/** A distinguished name on one line ("CN=..., O=..."), as operators read it in openssl output. */
export function distinguishedName(name: string): string {
  return name.split('\n').filter(Boolean).join(', ');
}

/** URI SANs of a certificate. node:crypto quotes values holding special characters as JSON strings. */
export function uriSans(cert: X509Certificate): string[] {
  const text = cert.subjectAltName;
  if (!text) return [];
  const uris: string[] = [];
  const entry = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (let match = entry.exec(text); match && match[0] !== ''; match = entry.exec(text)) {
    if (match[1] !== 'URI') continue;
    const value = match[2]!;
    uris.push(value.startsWith('"') ? (JSON.parse(value) as string) : value);
  }
  return uris;
}

/**
 * Checks an SVID the way a peer will: the leaf carries exactly `expectedId`, is not a CA
 * and matches its private key; every certificate is within its validity window; each
 * certificate is signed by the next until one is signed by a trust anchor.
 */
export function verifySvid(svid: X509Svid, opts: VerifyOptions): SvidVerification {
  const id = opts.expectedId;
  const source = opts.anchorsSource ?? 'the configured trust anchors';
  const fail = (reason: string): SvidVerification => ({ ok: false, reason });
  const [leaf, ...intermediates] = svid.chain;
  if (!leaf) return fail(`SVID for ${id} has no certificate; the Workload API sent an empty chain`);

  const uris = uriSans(leaf);
  if (uris.length === 0) return fail(`SVID for ${id} has no URI SAN; an X.509-SVID must carry its SPIFFE ID as its only URI SAN`);
  if (uris.length > 1) return fail(`SVID for ${id} has ${uris.length} URI SANs (${uris.join(', ')}); an X.509-SVID carries exactly one`);
  if (uris[0] !== id) return fail(`SVID carries SPIFFE ID ${uris[0]} but identity.spiffeId is ${id}; fix the SPIRE registration entry or identity.spiffeId`);
  if (leaf.ca) return fail(`SVID for ${id} is a CA certificate; a workload SVID must not be a CA`);

  for (const cert of svid.chain) {
    const window = validityProblem(cert, opts.now);
    if (window) return fail(`SVID chain for ${id}: ${window}`);
  }

  const keyProblem = privateKeyProblem(leaf, svid.keyPem);
  if (keyProblem) return fail(`SVID for ${id}: ${keyProblem}`);

  let current = leaf;
  for (let i = 0; ; i++) {
    const anchor = opts.anchors.find((a) => current.checkIssued(a) && current.verify(a.publicKey));
    if (anchor) {
      const window = validityProblem(anchor, opts.now);
      if (window) return fail(`trust anchor in ${source}: ${window}`);
      return { ok: true, spiffeId: id, serial: leaf.serialNumber, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) };
    }
    const next = intermediates[i];
    if (!next) {
      const known = opts.anchors.map((a) => distinguishedName(a.subject)).join('; ') || 'none';
      return fail(
        `SVID chain for ${id} does not verify against any trust anchor in ${source}; issuer ${distinguishedName(current.issuer)}, trust anchors: ${known}. ` +
          'The SPIRE server must sign with (an UpstreamAuthority chaining to) the mesh trust anchor',
      );
    }
    if (!current.checkIssued(next) || !current.verify(next.publicKey)) {
      return fail(`SVID chain for ${id} is out of order: ${distinguishedName(current.subject)} is not signed by the next certificate ${distinguishedName(next.subject)}`);
    }
    if (!next.ca) return fail(`SVID chain for ${id}: intermediate ${distinguishedName(next.subject)} is not a CA certificate`);
    current = next;
  }
}

function validityProblem(cert: X509Certificate, now: Date): string | undefined {
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  const name = cert.ca ? distinguishedName(cert.subject) : `certificate serial ${cert.serialNumber}`;
  if (now < notBefore) return `${name} is not valid before ${notBefore.toISOString()} (now ${now.toISOString()}); check the clocks of this host and the SPIRE server`;
  if (now > notAfter) return `${name} expired at ${notAfter.toISOString()} (now ${now.toISOString()})`;
  return undefined;
}

function privateKeyProblem(leaf: X509Certificate, keyPem: string): string | undefined {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyPem);
  } catch (err) {
    return `the private key cannot be read as PKCS#8: ${(err as Error).message}`;
  }
  if (!createPublicKey(privateKey).equals(leaf.publicKey)) return `the private key does not belong to the certificate (serial ${leaf.serialNumber})`;
  return undefined;
}
