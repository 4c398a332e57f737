import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './paths.ts';

declare const MESH_HARNESS_VERSION: string | undefined;

/** The package version: baked in by the bundler, read from package.json when run from source. */
export function harnessVersion(): string {
  if (typeof MESH_HARNESS_VERSION === 'string') return MESH_HARNESS_VERSION;
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
