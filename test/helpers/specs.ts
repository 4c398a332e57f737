import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is test/helpers/specs.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** An upstream interface the project carries and is tested against, and where it came from. */
export interface VendoredSpec {
  /** In the repository. */
  path: string;
  /** The comment prefix of the provenance header the repository's copy starts with. */
  comment: '#' | '//';
  upstream: string;
  commit: string;
  /** SHA-256 of the upstream file as vendored (everything below the provenance header). */
  sha256: string;
}

/**
 * The upstream files vendored unchanged below a provenance header. To update one, replace
 * everything below its header with the new upstream file, and change the commit in the
 * header and here, and the checksum here.
 */
export const VENDORED_SPECS: VendoredSpec[] = [
  {
    path: 'deploy/linkerd/external-workload.crd.yaml',
    comment: '#',
    upstream: 'github.com/linkerd/linkerd2 charts/linkerd-crds/templates/workload/external-workload.yaml, Helm template lines removed',
    commit: 'b24cd4059841f8cee2fb7a9c2ac23a693c583579',
    sha256: 'eb59a82a672d26cb2733077341c14e86bdab0e757a30c1c638aed0d8fe4bfa10',
  },
  {
    path: 'proto/workload.proto',
    comment: '//',
    upstream: 'github.com/spiffe/go-spiffe proto/spiffe/workload/workload.proto',
    commit: 'e9973f6314a3fa0e36eb1f00fbfe37bdc1554b96',
    sha256: 'd25fb04b13019b27daabc5deaa37f886205289be9df865c4fd6ab4f313ae69df',
  },
];

/** A vendored file split into its provenance header (the leading comment lines, and one blank line after them) and the upstream text. */
export function splitProvenance(text: string, comment: VendoredSpec['comment']): { header: string; upstream: string } {
  const lines = text.split('\n');
  let n = 0;
  while (n < lines.length && lines[n]!.startsWith(comment)) n += 1;
  if (n > 0 && lines[n] === '') n += 1;
  return { header: lines.slice(0, n).join('\n'), upstream: lines.slice(n).join('\n') };
}
