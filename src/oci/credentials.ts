/**
 * Pull secrets in Docker's config.json format, as `docker login` writes ~/.docker/config.json
 * and as a Kubernetes `kubernetes.io/dockerconfigjson` Secret holds it:
 * `{"auths": {"<registry>": {"auth": "<base64 user:password>"}}}`, or `username` and
 * `password`, or a `registrytoken` (a bearer token used as it is).
 */
import { OciError } from './errors.ts';

export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** A bearer token sent as it is. */
  registryToken?: string;
}

/** The host (and port) a config.json key names: keys may be bare hosts or URLs (`https://index.docker.io/v1/`). */
function keyHost(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
}

const DOCKER_HUB_KEYS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** The credentials for `registry` in a parsed config.json, or undefined when it has none for it. */
export function credentialsFor(config: unknown, registry: string, source: string): RegistryCredentials | undefined {
  const auths = config !== null && typeof config === 'object' && !Array.isArray(config) ? (config as Record<string, unknown>)['auths'] : undefined;
  if (auths === null || typeof auths !== 'object' || Array.isArray(auths)) {
    throw new OciError(`${source}: not a Docker config.json pull secret (no "auths" object); write {"auths": {"${registry}": {"auth": "<base64 of user:password>"}}}`);
  }
  const wanted = registry.toLowerCase();
  const matches = (key: string) => keyHost(key) === wanted || (DOCKER_HUB_KEYS.has(wanted) && DOCKER_HUB_KEYS.has(keyHost(key)));
  const entry = Object.entries(auths as Record<string, unknown>).find(([key]) => matches(key))?.[1];
  if (entry === undefined) return undefined;
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new OciError(`${source}: the entry for ${registry} is not an object`);
  const fields = entry as Record<string, unknown>;
  const text = (name: string): string | undefined => (typeof fields[name] === 'string' && fields[name] !== '' ? (fields[name] as string) : undefined);
  if (text('registrytoken')) return { registryToken: text('registrytoken')! };
  if (text('auth')) {
    const decoded = Buffer.from(text('auth')!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) throw new OciError(`${source}: the "auth" of ${registry} is not the base64 of user:password`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (text('username') && text('password') !== undefined) return { username: text('username')!, password: text('password')! };
  if (text('identitytoken')) throw new OciError(`${source}: the entry for ${registry} holds only an identitytoken (an OAuth refresh token), which is not supported; give a username and password (or a robot account's token as the password)`, 'unsupported');
  throw new OciError(`${source}: the entry for ${registry} has no "auth", "username"/"password" or "registrytoken"`);
}
