import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { DevCa, type IssuedSvid } from '../../../src/dev/ca.ts';
import { parseTrustAnchors, uriSans, verifySvid } from '../../../src/identity/verify.ts';
import type { X509Svid } from '../../../src/identity/workload-api-client.ts';

const TD = 'root.linkerd.cluster.local';
const ID = `spiffe://${TD}/vm/web`;
const ANCHORS_FILE = '/etc/mesh-harness/trust-anchors.pem';

function asSvid(issued: IssuedSvid, ca: DevCa, chain = issued.chain): X509Svid {
  return { spiffeId: issued.spiffeId, chain: chain.map((pem) => new X509Certificate(pem)), keyPem: issued.keyPem, bundle: [new X509Certificate(ca.bundlePem)], hint: '' };
}

function verify(svid: X509Svid, anchorsPem: string, now = new Date()) {
  return verifySvid(svid, { anchors: parseTrustAnchors(anchorsPem, ANCHORS_FILE), expectedId: ID, now, anchorsSource: ANCHORS_FILE });
}

t.test('an SVID signed by the anchor verifies and reports its serial and validity', async (t) => {
  const root = await DevCa.create({ trustDomain: TD });
  const issued = await root.issueSvid({ spiffeId: ID, ttlMs: 60_000 });
  const result = verify(asSvid(issued, root), root.bundlePem);
  t.ok(result.ok, result.ok ? 'ok' : result.reason);
  if (!result.ok) return;
  t.equal(result.spiffeId, ID);
  t.equal(result.serial, issued.serial);
  t.same(result.notBefore, issued.notBefore);
  t.same(result.notAfter, issued.notAfter);
});

t.test('a chain through an intermediate verifies; without the intermediate it does not', async (t) => {
  const root = await DevCa.create({ trustDomain: TD });
  const intermediate = await root.issueIntermediate();
  const issued = await intermediate.issueSvid({ spiffeId: ID, ttlMs: 60_000 });
  t.equal(issued.chain.length, 2, 'leaf and intermediate');
  const full = verify(asSvid(issued, root), root.bundlePem);
  t.ok(full.ok, full.ok ? 'ok' : full.reason);

  const leafOnly = verify(asSvid(issued, root, issued.chain.slice(0, 1)), root.bundlePem);
  t.notOk(leafOnly.ok);
  if (!leafOnly.ok) t.match(leafOnly.reason, /does not verify against any trust anchor .*issuer CN=mesh-harness dev intermediate CA/);
});

t.test('an anchor list holding several roots accepts an SVID from any of them', async (t) => {
  const old = await DevCa.create({ trustDomain: TD, commonName: 'old root' });
  const current = await DevCa.create({ trustDomain: TD, commonName: 'new root' });
  const issued = await current.issueSvid({ spiffeId: ID, ttlMs: 60_000 });
  const result = verify(asSvid(issued, current), old.bundlePem + current.bundlePem);
  t.ok(result.ok, result.ok ? 'ok' : result.reason);
});

t.test('a chain to another root names the file, the issuer and the anchors it knows', async (t) => {
  const root = await DevCa.create({ trustDomain: TD, commonName: 'spire upstream' });
  const linkerd = await DevCa.create({ trustDomain: TD, commonName: 'linkerd trust anchor' });
  const result = verify(asSvid(await root.issueSvid({ spiffeId: ID, ttlMs: 60_000 }), root), linkerd.bundlePem);
  t.notOk(result.ok);
  if (result.ok) return;
  t.match(result.reason, `SVID chain for ${ID} does not verify against any trust anchor in ${ANCHORS_FILE}`);
  t.match(result.reason, 'issuer CN=spire upstream, O=mesh-harness');
  t.match(result.reason, 'trust anchors: CN=linkerd trust anchor, O=mesh-harness');
});

t.test('an intermediate out of order is reported as such', async (t) => {
  const root = await DevCa.create({ trustDomain: TD });
  const a = await root.issueIntermediate({ commonName: 'intermediate A' });
  const b = await root.issueIntermediate({ commonName: 'intermediate B' });
  const issued = await a.issueSvid({ spiffeId: ID, ttlMs: 60_000 });
  const result = verify(asSvid(issued, root, [issued.chain[0]!, b.certPem]), root.bundlePem);
  t.notOk(result.ok);
  if (!result.ok) t.match(result.reason, /is not signed by the next certificate CN=intermediate B/);
});

t.test('expired and not-yet-valid SVIDs are refused with their dates', async (t) => {
  const root = await DevCa.create({ trustDomain: TD });
  const expired = await root.issueSvid({ spiffeId: ID, ttlMs: 60_000, notBefore: new Date(Date.now() - 3_600_000) });
  const late = verify(asSvid(expired, root), root.bundlePem);
  t.notOk(late.ok);
  if (!late.ok) t.match(late.reason, `expired at ${expired.notAfter.toISOString()}`);

  const fresh = await root.issueSvid({ spiffeId: ID, ttlMs: 60_000 });
  const early = verify(asSvid(fresh, root), root.bundlePem, new Date(fresh.notBefore.getTime() - 60_000));
  t.notOk(early.ok);
  if (!early.ok) t.match(early.reason, /is not valid before .*check the clocks/);
});

t.test('the URI SAN must be exactly the configured SPIFFE ID', async (t) => {
  const root = await DevCa.create({ trustDomain: TD });
  const other = verify(asSvid(await root.issueSvid({ spiffeId: `spiffe://${TD}/vm/db`, ttlMs: 60_000 }), root), root.bundlePem);
  t.notOk(other.ok);
  if (!other.ok) t.match(other.reason, `SVID carries SPIFFE ID spiffe://${TD}/vm/db but identity.spiffeId is ${ID}`);

  const none = verify(asSvid(await root.issueSvid({ spiffeId: ID, ttlMs: 60_000, uris: [] }), root), root.bundlePem);
  t.notOk(none.ok);
  if (!none.ok) t.match(none.reason, 'has no URI SAN');

  const two = verify(asSvid(await root.issueSvid({ spiffeId: ID, ttlMs: 60_000, uris: [ID, `spiffe://${TD}/vm/db`] }), root), root.bundlePem);
  t.notOk(two.ok);
  if (!two.ok) t.match(two.reason, 'has 2 URI SANs');
});

t.test('a CA certificate is not a workload SVID', async (t) => {
  const root = await DevCa.create({ trustDomain: TD });
  const intermediate = await root.issueIntermediate();
  const svid: X509Svid = { spiffeId: `spiffe://${TD}`, chain: [new X509Certificate(intermediate.certPem)], keyPem: intermediate.keyPem, bundle: [], hint: '' };
  const result = verifySvid(svid, { anchors: parseTrustAnchors(root.bundlePem, 'x'), expectedId: `spiffe://${TD}`, now: new Date() });
  t.notOk(result.ok);
  if (!result.ok) t.match(result.reason, 'is a CA certificate');
});

t.test('a private key that does not belong to the leaf is refused', async (t) => {
  const root = await DevCa.create({ trustDomain: TD });
  const a = await root.issueSvid({ spiffeId: ID, ttlMs: 60_000 });
  const b = await root.issueSvid({ spiffeId: ID, ttlMs: 60_000 });
  const result = verify({ ...asSvid(a, root), keyPem: b.keyPem }, root.bundlePem);
  t.notOk(result.ok);
  if (!result.ok) t.match(result.reason, 'private key does not belong to the certificate');
  const garbage = verify({ ...asSvid(a, root), keyPem: '-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n' }, root.bundlePem);
  t.notOk(garbage.ok);
  if (!garbage.ok) t.match(garbage.reason, 'the private key cannot be read as PKCS#8');
});

t.test('parseTrustAnchors names the source for empty, broken and non-CA input', async (t) => {
  const root = await DevCa.create({ trustDomain: TD });
  t.throws(() => parseTrustAnchors('', '/etc/anchors.pem'), /trust anchors \/etc\/anchors.pem: no PEM certificate found/);
  t.throws(() => parseTrustAnchors('-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n', '/etc/anchors.pem'), /trust anchors \/etc\/anchors.pem: certificate 1 cannot be parsed/);
  const leaf = (await root.issueSvid({ spiffeId: ID, ttlMs: 60_000 })).chain[0]!;
  t.throws(() => parseTrustAnchors(root.bundlePem + leaf, '/etc/anchors.pem'), /certificate 2 \(O=mesh-harness dev SVID\) is not a CA certificate/);
  t.equal(parseTrustAnchors(`some text\n${root.bundlePem}trailing`, 'x').length, 1);
});

t.test('uriSans reads quoted values', async (t) => {
  const root = await DevCa.create({ trustDomain: TD });
  const odd = `spiffe://${TD}/a,b`;
  const issued = await root.issueSvid({ spiffeId: odd, ttlMs: 60_000, uris: [odd, 'spiffe://x/y'] });
  t.same(uriSans(new X509Certificate(issued.chain[0]!)), [odd, 'spiffe://x/y']);
});
