/**
 * A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution) on a
 * loopback port, storing in a temp directory, started as the test's child and killed in
 * teardown. Images go in with skopeo, as operators push them. With `tokenAuth`, the
 * registry demands bearer tokens from a token service this helper serves (the
 * distribution token protocol: a JWT signed with a key whose certificate the registry
 * trusts), which hands them out for one user name and password only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSign, randomBytes, X509Certificate } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { execa } from 'execa';
import { DevCa } from '../../src/dev/ca.ts';
import { freePort, tempDir, waitFor } from './tmp.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface RegistryOptions {
  /** Storage shared with another registry (one to push to, one that demands tokens). */
  storage?: string;
  tokenAuth?: { username: string; password: string };
}

export interface TestRegistry {
  /** 127.0.0.1:PORT */
  address: string;
  storage: string;
  /** Pushes an OCI layout's image (every platform) as repository:tag. */
  push(layoutDir: string, refName: string, target: string): Promise<void>;
  /** Where the registry keeps a blob's bytes. */
  blobFile(digest: string): string;
  /** Token requests the token service answered, with the scope asked for. */
  tokenRequests: Array<{ scope: string; authenticated: boolean }>;
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

async function startTokenService(t: Teardown, service: string, issuer: string, credentials: { username: string; password: string }, ca: DevCa, requests: TestRegistry['tokenRequests']): Promise<string> {
  const der = new X509Certificate(ca.certPem).raw;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token');
    const scope = url.searchParams.get('scope') ?? '';
    const expected = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    const authenticated = req.headers.authorization === expected;
    requests.push({ scope, authenticated });
    if (!authenticated) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    const [type, name, actions] = scope.split(':');
    const now = Math.floor(Date.now() / 1000);
    const header = base64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', x5c: [der.toString('base64')] }));
    const claims = base64url(JSON.stringify({ iss: issuer, sub: credentials.username, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access: type ? [{ type, name, actions: (actions ?? '').split(',') }] : [] }));
    const signature = createSign('SHA256').update(`${header}.${claims}`).sign({ key: ca.keyPem, dsaEncoding: 'ieee-p1363' });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${header}.${claims}.${base64url(signature)}` }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/token`;
}

export async function startRegistry(t: Teardown, options: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = tempDir(t, 'mh-registry-');
  const storage = options.storage ?? join(dir, 'storage');
  mkdirSync(storage, { recursive: true });
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const tokenRequests: TestRegistry['tokenRequests'] = [];
  let auth = '';
  if (options.tokenAuth) {
    const ca = await DevCa.create({ trustDomain: 'registry.test', commonName: 'test token signer' });
    writeFileSync(join(dir, 'token.crt'), ca.certPem);
    const realm = await startTokenService(t, 'test-registry', 'test-token-issuer', options.tokenAuth, ca, tokenRequests);
    auth = `auth:\n  token:\n    realm: ${realm}\n    service: test-registry\n    issuer: test-token-issuer\n    rootcertbundle: ${join(dir, 'token.crt')}\n`;
  }
  writeFileSync(join(dir, 'config.yml'), `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storage}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${address}
  secret: ${randomBytes(16).toString('hex')}
${auth}`);
  const logFile = join(dir, 'registry.log');
  const fd = openSync(logFile, 'a');
  const child: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const log = () => readFileSync(logFile, 'utf8').slice(-2000);
  await waitFor(`docker-registry on ${address}`, async () => {
    if (child.exitCode !== null) throw new Error(`docker-registry exited ${child.exitCode}: ${log()}`);
    const response = await fetch(`http://${address}/v2/`).catch(() => undefined);
    return response && (response.status === 200 || response.status === 401) ? true : undefined;
  }, 20_000, 100).catch((err: Error) => {
    throw new Error(`${err.message}\n${log()}`);
  });
  return {
    address,
    storage,
    tokenRequests,
    async push(layoutDir, refName, target) {
      const result = await execa('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${layoutDir}:${refName}`, `docker://${address}/${target}`], { reject: false, all: true });
      if (result.exitCode !== 0) throw new Error(`skopeo copy to ${address}/${target} failed: ${result.all}`);
    },
    blobFile(digest) {
      const hex = digest.slice('sha256:'.length);
      return join(storage, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    },
  };
}
