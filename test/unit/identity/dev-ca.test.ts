import t from 'tap';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { DevCa } from '../../../src/dev/ca.ts';
import * as x509 from '@peculiar/x509';

t.test('a root CA is a self-signed CA with keyCertSign', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org', commonName: 'test root' });
  const cert = new X509Certificate(ca.certPem);
  t.equal(cert.ca, true);
  t.ok(cert.checkIssued(cert) && cert.verify(cert.publicKey), 'self-signed');
  t.equal(cert.subject, 'CN=test root\nO=mesh-harness');
  t.equal(ca.bundlePem, ca.certPem, 'a root is its own trust anchor');
  t.same(ca.chainPem, []);
  const usage = new x509.X509Certificate(ca.certPem).getExtension(x509.KeyUsagesExtension);
  t.ok(usage && usage.usages & x509.KeyUsageFlags.keyCertSign);
});

t.test('SVIDs carry one URI SAN, digitalSignature and no CA flag, and chain through intermediates', async (t) => {
  const root = await DevCa.create({ trustDomain: 'example.org' });
  const intermediate = await root.issueIntermediate({ commonName: 'mid' });
  const svid = await intermediate.issueSvid({ spiffeId: 'spiffe://example.org/vm/a', ttlMs: 30_000 });
  t.equal(svid.chain.length, 2);
  const leaf = new X509Certificate(svid.chain[0]!);
  const mid = new X509Certificate(svid.chain[1]!);
  t.equal(leaf.ca, false);
  t.equal(leaf.subjectAltName, 'URI:spiffe://example.org/vm/a');
  t.ok(leaf.verify(mid.publicKey) && mid.verify(new X509Certificate(root.bundlePem).publicKey), 'leaf <- intermediate <- root');
  t.equal(intermediate.bundlePem, root.bundlePem);
  const parsed = new x509.X509Certificate(svid.chain[0]!);
  const usage = parsed.getExtension(x509.KeyUsagesExtension)!;
  t.ok(usage.usages & x509.KeyUsageFlags.digitalSignature);
  t.notOk(usage.usages & x509.KeyUsageFlags.keyCertSign);
  t.equal(svid.notAfter.getTime() - Date.now() <= 30_000, true, 'lifetime counts from now');
  t.equal(createPrivateKey(svid.keyPem).asymmetricKeyType, 'ec');
  t.ok(svid.chainDer[0]!.equals(leaf.raw));
});

t.test('fromPem takes PKCS#8 or SEC1 keys and keeps issuing from the same CA', async (t) => {
  const original = await DevCa.create({ trustDomain: 'example.org' });
  const sec1 = createPrivateKey(original.keyPem).export({ format: 'pem', type: 'sec1' }) as string;
  for (const keyPem of [original.keyPem, sec1]) {
    const again = await DevCa.fromPem({ certPem: original.certPem, keyPem, trustDomain: 'example.org' });
    const svid = await again.issueSvid({ spiffeId: 'spiffe://example.org/b', ttlMs: 10_000 });
    t.ok(new X509Certificate(svid.chain[0]!).verify(new X509Certificate(original.bundlePem).publicKey));
  }
  await t.rejects(DevCa.fromPem({ certPem: 'nothing', keyPem: original.keyPem, trustDomain: 'x' }), /no PEM CERTIFICATE block/);
  await t.rejects(DevCa.fromPem({ certPem: original.certPem, keyPem: 'nothing', trustDomain: 'x' }), /cannot read the CA private key/);
});
