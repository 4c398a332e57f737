import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is test/helpers/specs.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * A file of the upstream specs (the real Linkerd CRD, workload.proto), used as they are.
 * They live in shared/specs beside the clone (CI: ../shared); a git worktree sits deeper,
 * so the nearest ancestor with shared/specs wins.
 */
export function sharedSpec(name: string): string {
  for (let dir = dirname(REPO_ROOT); ; dir = dirname(dir)) {
    const candidate = join(dir, 'shared', 'specs', name);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new Error(`shared/specs/${name} not found beside ${REPO_ROOT} or above it; the specs must sit in ../shared as in CI`);
}
