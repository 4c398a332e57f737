/**
 * The OCI distribution API, the part a pull needs: `GET /v2/<name>/manifests/<reference>`
 * and `GET /v2/<name>/blobs/<digest>`, over HTTPS (plain HTTP only for a loopback registry
 * or when asked), anonymous or authenticated the way registries ask for it in their 401:
 * `Bearer realm=...,service=...,scope=...` (a token from the realm, with the pull secret's
 * user and password when there is one; cr.l5d.io, ghcr.io, Docker Hub and distribution
 * with token auth do this even for anonymous pulls) or `Basic`.
 *
 * Node's fetch follows the registries' redirects to their blob storage and drops the
 * Authorization header when a redirect leaves the registry's origin; it also bounds the
 * wait for headers and between body chunks (5 minutes each), so a stalled registry fails.
 */
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import type { RegistryCredentials } from './credentials.ts';
import { OciError } from './errors.ts';
import { MANIFEST_ACCEPT, MAX_DOCUMENT_BYTES, type Descriptor } from './manifest.ts';
import { apiHost, type ImageReference } from './reference.ts';
import type { FetchedManifest, ImageSource } from './source.ts';

export interface RegistrySourceOptions {
  credentials?: RegistryCredentials;
  /** Plain HTTP to a registry that is not on loopback (a lab registry without TLS). */
  plainHttp?: boolean;
  userAgent?: string;
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** `Bearer realm="https://auth",service="reg",scope="repository:x:pull"` (RFC 7235 auth-params). */
export function parseChallenge(header: string): Challenge | undefined {
  const match = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const param = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/gy;
  const rest = match[2]!;
  param.lastIndex = 0;
  let p: RegExpExecArray | null;
  while (param.lastIndex < rest.length && (p = param.exec(rest)) !== null) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1';
}

/** Reads a body, refusing one larger than `limit` without reading it all. */
async function readLimited(response: Response, limit: number, what: string): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) throw new OciError(`${what} is ${declared} bytes, more than the ${limit} a manifest may have`);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > limit) throw new OciError(`${what} is more than the ${limit} bytes a manifest may have`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** distribution's `{"errors": [{"code": ..., "message": ...}]}`, shortened for a message. */
async function errorText(response: Response): Promise<string> {
  const text = await response.text().catch(() => '');
  try {
    const errors = (JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> }).errors;
    if (Array.isArray(errors) && errors.length) return errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ').slice(0, 300);
  } catch {
    // not JSON: the text itself
  }
  return text.trim().slice(0, 300);
}

export class RegistrySource implements ImageSource {
  readonly description: string;
  private readonly base: string;
  private readonly scheme: 'https' | 'http';
  private authorization: string | undefined;

  constructor(
    private readonly ref: ImageReference,
    private readonly options: RegistrySourceOptions = {},
  ) {
    this.scheme = options.plainHttp || isLoopbackHost(ref.registry) ? 'http' : 'https';
    this.base = `${this.scheme}://${apiHost(ref.registry)}/v2/${ref.repository}`;
    this.description = `${ref.registry}/${ref.repository}`;
    if (options.credentials?.registryToken) this.authorization = `Bearer ${options.credentials.registryToken}`;
  }

  async manifest(reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const what = `manifest ${this.description}:${reference}`;
    const response = await this.get(`/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, what, signal);
    const bytes = await readLimited(response, MAX_DOCUMENT_BYTES, what);
    const contentType = response.headers.get('content-type') ?? undefined;
    const claimedDigest = response.headers.get('docker-content-digest') ?? undefined;
    return { bytes, ...(contentType ? { contentType } : {}), ...(claimedDigest ? { claimedDigest } : {}) };
  }

  async blob(descriptor: Descriptor, signal?: AbortSignal): Promise<Readable> {
    const response = await this.get(`/blobs/${descriptor.digest}`, {}, `blob ${descriptor.digest} of ${this.description}`, signal);
    return Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
  }

  /** A GET that answers 200 with a body, authenticating once when the registry asks for it. */
  private async get(path: string, headers: Record<string, string>, what: string, signal?: AbortSignal): Promise<Response> {
    let response = await this.send(path, headers, signal);
    if (response.status === 401) {
      const challenge = parseChallenge(response.headers.get('www-authenticate') ?? '');
      await response.body?.cancel();
      this.authorization = await this.authenticate(challenge, signal);
      response = await this.send(path, headers, signal);
      if (response.status === 401) {
        await response.body?.cancel();
        throw new OciError(`${this.description} refused the ${this.options.credentials ? 'pull secret\'s credentials' : 'anonymous pull token'} for ${what} (HTTP 401)${this.options.credentials ? '' : '; pass --pull-secret FILE'}`, 'auth');
      }
    }
    if (response.status === 200 && response.body) return response;
    const detail = await errorText(response);
    if (response.status === 404) throw new OciError(`${what}: not found in ${this.ref.registry} (HTTP 404${detail ? `: ${detail}` : ''}); check the image name and tag`, 'not-found');
    if (response.status === 403) throw new OciError(`${what}: access denied (HTTP 403${detail ? `: ${detail}` : ''}); the pull secret's account may not pull ${this.description}`, 'auth');
    if (response.status === 429 || response.status >= 500) throw new OciError(`${what}: the registry answered HTTP ${response.status}${detail ? ` (${detail})` : ''}; try again later`, 'unavailable');
    throw new OciError(`${what}: the registry answered HTTP ${response.status}${detail ? ` (${detail})` : ''}`, 'failed');
  }

  private async send(path: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    const url = `${this.base}${path}`;
    try {
      return await fetch(url, {
        headers: { ...headers, 'user-agent': this.options.userAgent ?? 'mesh-harness', ...(this.authorization ? { authorization: this.authorization } : {}) },
        redirect: 'follow',
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new OciError(`cannot reach ${this.scheme}://${apiHost(this.ref.registry)}: ${causeOf(err)}`, 'unavailable');
    }
  }

  /** The Authorization header value the challenge asks for. */
  private async authenticate(challenge: Challenge | undefined, signal?: AbortSignal): Promise<string> {
    const credentials = this.options.credentials;
    const basic = credentials?.username !== undefined ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password ?? ''}`).toString('base64')}` : undefined;
    if (challenge?.scheme === 'basic') {
      if (!basic) throw new OciError(`${this.description} asks for a user name and password; pass --pull-secret FILE (a Docker config.json)`, 'auth');
      return basic;
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params['realm']) {
      throw new OciError(`${this.description} asked for authentication this client does not speak (WWW-Authenticate: ${challenge ? challenge.scheme : 'absent'})`, 'unsupported');
    }
    let realm: URL;
    try {
      realm = new URL(challenge.params['realm']);
    } catch {
      throw new OciError(`${this.description}: the token realm ${JSON.stringify(challenge.params['realm'])} is not a URL`, 'failed');
    }
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && (isLoopbackHost(realm.host) || this.scheme === 'http'))) {
      throw new OciError(`${this.description}: the token realm ${realm.href} is not HTTPS; refusing to send credentials there`, 'auth');
    }
    realm.searchParams.set('scope', challenge.params['scope'] ?? `repository:${this.ref.repository}:pull`);
    if (challenge.params['service']) realm.searchParams.set('service', challenge.params['service']);
    let response: Response;
    try {
      response = await fetch(realm, { headers: { 'user-agent': this.options.userAgent ?? 'mesh-harness', ...(basic ? { authorization: basic } : {}) }, ...(signal ? { signal } : {}) });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new OciError(`cannot reach the token service ${realm.origin}: ${causeOf(err)}`, 'unavailable');
    }
    if (response.status === 401 || response.status === 403) {
      throw new OciError(`the token service ${realm.origin} refused ${basic ? 'the pull secret\'s credentials' : 'an anonymous pull'} (HTTP ${response.status}: ${await errorText(response)})${basic ? '' : '; pass --pull-secret FILE'}`, 'auth');
    }
    if (response.status !== 200) throw new OciError(`the token service ${realm.origin} answered HTTP ${response.status}: ${await errorText(response)}`, response.status >= 500 ? 'unavailable' : 'auth');
    let token: unknown;
    try {
      const body = JSON.parse((await readLimited(response, 64 * 1024, 'the token answer')).toString('utf8')) as Record<string, unknown>;
      token = body['token'] ?? body['access_token'];
    } catch (err) {
      if (err instanceof OciError) throw err;
    }
    if (typeof token !== 'string' || token === '') throw new OciError(`the token service ${realm.origin} answered without a token`, 'auth');
    return `Bearer ${token}`;
  }
}

function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.message ? `${cause.code ? `${cause.code}: ` : ''}${cause.message}` : (err as Error).message;
}
