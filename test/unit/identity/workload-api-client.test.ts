import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { DevCa } from '../../../src/dev/ca.ts';
import { decodeX509Svid, describeWorkloadApiStatus, parseWorkloadApiAddress, splitDer } from '../../../src/identity/workload-api-client.ts';

t.test('Workload API addresses: unix URIs and absolute paths give the socket path', async (t) => {
  t.equal(parseWorkloadApiAddress('unix:///run/spire/agent/api.sock'), '/run/spire/agent/api.sock');
  t.equal(parseWorkloadApiAddress('unix:/run/spire/agent/api.sock'), '/run/spire/agent/api.sock');
  t.equal(parseWorkloadApiAddress('/run/spire/agent/api.sock'), '/run/spire/agent/api.sock');
  t.equal(parseWorkloadApiAddress('  unix:///tmp/a.sock '), '/tmp/a.sock');
});

t.test('Workload API addresses: other forms are refused with the value and the fix', async (t) => {
  const fix = /use unix:\/\/\/path\/to\/api.sock or an absolute path/;
  t.throws(() => parseWorkloadApiAddress(''), /empty/);
  t.throws(() => parseWorkloadApiAddress('tcp://127.0.0.1:8081'), /"tcp:\/\/127.0.0.1:8081" is not a Unix socket/);
  t.throws(() => parseWorkloadApiAddress('tcp://127.0.0.1:8081'), fix);
  t.throws(() => parseWorkloadApiAddress('unix://agent/api.sock'), /names a host or a relative path/);
  t.throws(() => parseWorkloadApiAddress('unix:api.sock'), /relative socket path/);
  t.throws(() => parseWorkloadApiAddress('api.sock'), /relative path/);
  t.throws(() => parseWorkloadApiAddress('unix:///run/api.sock?x=1'), /query or fragment/);
  t.throws(() => parseWorkloadApiAddress(`/${'d'.repeat(120)}/api.sock`), /Unix sockets allow at most 107/);
});

t.test('splitDer separates concatenated certificates and refuses garbage', async (t) => {
  const root = await DevCa.create({ trustDomain: 'example.org' });
  const intermediate = await root.issueIntermediate();
  const svid = await intermediate.issueSvid({ spiffeId: 'spiffe://example.org/a', ttlMs: 60_000 });
  const parts = splitDer(Buffer.concat(svid.chainDer), 'x509_svid');
  t.equal(parts.length, 2);
  t.ok(parts[0]!.equals(svid.chainDer[0]!));
  t.ok(parts[1]!.equals(svid.chainDer[1]!));
  t.same(splitDer(Buffer.alloc(0), 'x'), []);
  t.throws(() => splitDer(Buffer.from([0x04, 0x01, 0x00]), 'bundle'), /bundle: byte 0 does not start a DER SEQUENCE/);
  t.throws(() => splitDer(svid.chainDer[0]!.subarray(0, 40), 'x509_svid'), /runs past the end/);
});

t.test('decodeX509Svid turns a message entry into certificates and a PEM key', async (t) => {
  const root = await DevCa.create({ trustDomain: 'example.org' });
  const svid = await root.issueSvid({ spiffeId: 'spiffe://example.org/a', ttlMs: 60_000 });
  const raw = { spiffe_id: svid.spiffeId, x509_svid: Buffer.concat(svid.chainDer), x509_svid_key: svid.keyDer, bundle: root.bundleDer(), hint: 'internal' };
  const decoded = decodeX509Svid(raw);
  t.equal(decoded.spiffeId, 'spiffe://example.org/a');
  t.equal(decoded.chain[0]!.serialNumber, svid.serial);
  t.ok(decoded.bundle[0]!.raw.equals(new X509Certificate(root.bundlePem).raw));
  t.match(decoded.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  t.equal(decoded.hint, 'internal');

  t.throws(() => decodeX509Svid({ ...raw, spiffe_id: '' }), /without spiffe_id/);
  t.throws(() => decodeX509Svid({ ...raw, x509_svid: Buffer.alloc(0) }), /holds no certificate/);
  t.throws(() => decodeX509Svid({ ...raw, x509_svid_key: Buffer.from('nope') }), /x509_svid_key of spiffe:\/\/example.org\/a: byte 0 does not start a DER SEQUENCE/);
  t.equal(decoded.keyPem, svid.keyPem, 'the same PKCS#8 PEM the CA wrote');
});

t.test('gRPC statuses become operator messages that keep the code', async (t) => {
  const socket = '/run/spire/agent/api.sock';
  const missing = describeWorkloadApiStatus({ code: status.UNAVAILABLE, details: 'No connection established. Last error: connect ENOENT /run/spire/agent/api.sock' }, socket);
  t.equal(missing.code, status.UNAVAILABLE);
  t.match(missing.message, `Workload API socket ${socket} does not exist; is spire-agent running?`);
  t.match(describeWorkloadApiStatus({ code: status.UNAVAILABLE, details: 'connect ECONNREFUSED' }, socket).message, /connection refused/);
  t.match(describeWorkloadApiStatus({ code: status.PERMISSION_DENIED, details: 'no identity issued' }, socket).message, /^no identity issued \(PermissionDenied/);
  t.match(describeWorkloadApiStatus({ code: status.OK, details: '' }, socket).message, /ended the stream/);
  t.match(describeWorkloadApiStatus({ code: status.INVALID_ARGUMENT, details: 'security header missing' }, socket).message, /INVALID_ARGUMENT: security header missing/);
});
