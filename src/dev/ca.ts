/**
 * A throwaway X.509 certificate authority that issues real SPIFFE X.509-SVIDs (EC P-256).
 * The development Workload API server signs with it, and it is the one test CA helper
 * every test uses: roots, intermediates, SVIDs, and deliberately broken certificates
 * (expired, wrong SAN, no SAN) for negative cases.
 */
import { createPrivateKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import './reflect-metadata.ts';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** Certificates start a little in the past so small clock differences between hosts do not matter. */
const BACKDATE_MS = 10_000;

export interface IssuedSvid {
  /** The URI SAN written into the certificate ('' when issued without one). */
  spiffeId: string;
  /** PEM certificates, leaf first, then this CA's intermediates (never the root). */
  chain: string[];
  /** The same chain as DER, the form the Workload API sends. */
  chainDer: Buffer[];
  /** PKCS#8 PEM private key of the leaf. */
  keyPem: string;
  keyDer: Buffer;
  /** Serial number as upper-case hex, as node:crypto reports it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface IssueSvidOptions {
  spiffeId: string;
  ttlMs: number;
  /** Defaults to a few seconds before now; when given, the certificate ends at notBefore + ttlMs. */
  notBefore?: Date;
  /** URI SANs to write instead of `[spiffeId]`; `[]` issues a certificate without a SAN. */
  uris?: string[];
}

interface CaKeys {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  // A positive, non-zero leading byte keeps the DER INTEGER exactly 16 bytes and positive.
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

function toPem(der: ArrayBuffer | Buffer, label: string): string {
  return x509.PemConverter.encode(new Uint8Array(der), label).replace(/\r\n/g, '\n').trimEnd() + '\n';
}

function pemBlocks(text: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g');
  return (text.match(re) ?? []).map((block) => `${block}\n`);
}

async function exportKeyPem(key: CryptoKey): Promise<{ pem: string; der: Buffer }> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey));
  return { pem: toPem(der, 'PRIVATE KEY'), der };
}

function generateKeys(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

export class DevCa {
  private constructor(
    readonly trustDomain: string,
    private readonly ca: CaKeys,
    /** This CA's certificate, PEM. */
    readonly certPem: string,
    /** This CA's private key, PKCS#8 PEM. */
    readonly keyPem: string,
    /** Intermediates from this CA up to (not including) the root, PEM, this CA first. Empty for a root. */
    readonly chainPem: string[],
    /** The root certificate: the trust anchor SVIDs from this CA verify against. */
    readonly bundlePem: string,
  ) {}

  /** A new self-signed root CA for `trustDomain`. */
  static async create(options: { trustDomain: string; ttlMs?: number; commonName?: string; notBefore?: Date }): Promise<DevCa> {
    const keys = await generateKeys();
    const notBefore = options.notBefore ?? new Date(Date.now() - BACKDATE_MS);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `CN=${options.commonName ?? `mesh-harness dev root CA ${options.trustDomain}`}, O=mesh-harness`,
      notBefore,
      notAfter: new Date(notBefore.getTime() + (options.ttlMs ?? 365 * DAY_MS)),
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [...caExtensions(options.trustDomain), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)],
    });
    const certPem = toPem(cert.rawData, 'CERTIFICATE');
    return new DevCa(options.trustDomain, { cert, keys }, certPem, (await exportKeyPem(keys.privateKey)).pem, [], certPem);
  }

  /**
   * A CA from existing PEM (for example the Linkerd trust anchor and its key). `bundlePem`
   * is the root when this CA is an intermediate; without it the certificate is its own root.
   */
  static async fromPem(options: { certPem: string; keyPem: string; trustDomain: string; bundlePem?: string; chainPem?: string[] }): Promise<DevCa> {
    const certBlock = pemBlocks(options.certPem, 'CERTIFICATE')[0];
    if (!certBlock) throw new Error('DevCa.fromPem: no PEM CERTIFICATE block in certPem');
    const cert = new x509.X509Certificate(certBlock);
    let pkcs8: Buffer;
    try {
      // Accepts PKCS#8 and SEC1 ("EC PRIVATE KEY") PEM alike.
      pkcs8 = createPrivateKey(options.keyPem).export({ format: 'der', type: 'pkcs8' });
    } catch (err) {
      throw new Error(`DevCa.fromPem: cannot read the CA private key: ${(err as Error).message}`);
    }
    const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, KEY_ALGORITHM, true, ['sign']);
    const publicKey = await cert.publicKey.export(KEY_ALGORITHM, ['verify']);
    const keys = { privateKey, publicKey } as CryptoKeyPair;
    const certPem = toPem(cert.rawData, 'CERTIFICATE');
    const chainPem = options.chainPem ?? (options.bundlePem ? [certPem] : []);
    return new DevCa(options.trustDomain, { cert, keys }, certPem, toPem(pkcs8, 'PRIVATE KEY'), chainPem, options.bundlePem ?? certPem);
  }

  /** An intermediate CA signed by this one; its SVIDs carry the intermediates in their chain. */
  async issueIntermediate(options: { ttlMs?: number; commonName?: string } = {}): Promise<DevCa> {
    const keys = await generateKeys();
    const notBefore = new Date(Date.now() - BACKDATE_MS);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${options.commonName ?? `mesh-harness dev intermediate CA ${this.trustDomain}`}, O=mesh-harness`,
      issuer: this.ca.cert.subject,
      notBefore,
      notAfter: this.capToIssuer(new Date(notBefore.getTime() + (options.ttlMs ?? 30 * DAY_MS))),
      publicKey: keys.publicKey,
      signingKey: this.ca.keys.privateKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [...caExtensions(this.trustDomain), ...(await keyIdentifiers(keys.publicKey, this.ca.keys.publicKey))],
    });
    const certPem = toPem(cert.rawData, 'CERTIFICATE');
    return new DevCa(this.trustDomain, { cert, keys }, certPem, (await exportKeyPem(keys.privateKey)).pem, [certPem, ...this.chainPem], this.bundlePem);
  }

  /** An X.509-SVID: URI SAN, digitalSignature, not a CA, signed by this CA. */
  async issueSvid(options: IssueSvidOptions): Promise<IssuedSvid> {
    const keys = await generateKeys();
    const notBefore = options.notBefore ?? new Date(Date.now() - BACKDATE_MS);
    // The lifetime counts from now unless the caller fixed the start (expired certificates for tests).
    const notAfter = this.capToIssuer(new Date((options.notBefore ? notBefore.getTime() : Date.now()) + options.ttlMs));
    const uris = options.uris ?? [options.spiffeId];
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: 'O=mesh-harness dev SVID',
      issuer: this.ca.cert.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: this.ca.keys.privateKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        ...(uris.length ? [new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: 'url' as const, value })))] : []),
        ...(await keyIdentifiers(keys.publicKey, this.ca.keys.publicKey)),
      ],
    });
    const leafPem = toPem(cert.rawData, 'CERTIFICATE');
    const chain = [leafPem, ...this.chainPem];
    const key = await exportKeyPem(keys.privateKey);
    const node = new X509Certificate(leafPem);
    return {
      spiffeId: uris[0] ?? '',
      chain,
      chainDer: chain.map((pem) => new X509Certificate(pem).raw),
      keyPem: key.pem,
      keyDer: key.der,
      serial: node.serialNumber,
      notBefore: new Date(node.validFrom),
      notAfter: new Date(node.validTo),
    };
  }

  /** The trust anchor (root) as DER, the form the Workload API sends bundles in. */
  bundleDer(): Buffer {
    return new X509Certificate(this.bundlePem).raw;
  }

  private capToIssuer(notAfter: Date): Date {
    return notAfter > this.ca.cert.notAfter ? this.ca.cert.notAfter : notAfter;
  }
}

function caExtensions(trustDomain: string): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
  ];
}

async function keyIdentifiers(subjectKey: CryptoKey, issuerKey: CryptoKey): Promise<x509.Extension[]> {
  return [await x509.SubjectKeyIdentifierExtension.create(subjectKey), await x509.AuthorityKeyIdentifierExtension.create(issuerKey)];
}
