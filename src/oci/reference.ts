/**
 * Image references as Docker and every OCI tool write them:
 * `[registry[:port]/]repository[:tag][@algorithm:hex]`, e.g. `cr.l5d.io/linkerd/proxy:edge-25.4.1`.
 *
 * The grammar is distribution's: the first path component names a registry when it has a
 * dot or a port or is `localhost`; otherwise the image is on Docker Hub, whose API host is
 * registry-1.docker.io and whose one-component names live under `library/`. Strings come
 * from the command line and from the cluster (linkerd-config), so they are checked, never
 * trusted: a name that does not match is refused with the reason.
 */

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]{1,5})?$`);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
export const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
/** distribution's limit on a repository name. */
const MAX_NAME = 255;

const DOCKER_HUB = 'docker.io';

export interface ImageReference {
  /** Host (and port) as written, `docker.io` for Docker Hub. */
  registry: string;
  /** The repository path in that registry (`library/` added for Docker Hub's one-component names). */
  repository: string;
  tag?: string;
  digest?: string;
}

export class ReferenceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReferenceError';
  }
}

export function isTag(value: string): boolean {
  return TAG.test(value);
}

/** A repository name without tag or digest (`cr.l5d.io/linkerd/proxy`); throws ReferenceError. */
export function parseRepository(name: string): { registry: string; repository: string } {
  if (name.length === 0) throw new ReferenceError('the image name is empty');
  if (name.length > MAX_NAME) throw new ReferenceError(`the image name is longer than ${MAX_NAME} characters`);
  const slash = name.indexOf('/');
  const first = slash === -1 ? '' : name.slice(0, slash);
  const isRegistry = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase());
  const registry = isRegistry ? first : DOCKER_HUB;
  let repository = isRegistry ? name.slice(slash + 1) : name;
  if (isRegistry && !DOMAIN.test(registry)) throw new ReferenceError(`"${registry}" is not a registry host[:port]`);
  const components = repository.split('/');
  const bad = components.find((c) => !PATH_COMPONENT.test(c));
  if (bad !== undefined) throw new ReferenceError(`"${bad}" in "${name}" is not a repository path component (lowercase letters, digits and . _ - between them)`);
  if ((registry === DOCKER_HUB || registry === 'index.docker.io') && components.length === 1) repository = `library/${repository}`;
  return { registry: registry === 'index.docker.io' ? DOCKER_HUB : registry, repository };
}

/** Parses `name[:tag][@digest]`; a reference with neither tag nor digest means `:latest`. Throws ReferenceError. */
export function parseReference(text: string): ImageReference {
  let rest = text.trim();
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ReferenceError(`"${digest}" is not a digest (sha256:<64 hex> or sha512:<128 hex>)`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ReferenceError(`"${tag}" is not a tag (letters, digits, _ . -, at most 128, not starting with . or -)`);
  }
  const { registry, repository } = parseRepository(rest);
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}), ...(!tag && !digest ? { tag: 'latest' } : {}) };
}

export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The host the distribution API is served on. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
}
