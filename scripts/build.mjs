// Bundles each program into one file under dist/ so that starting it resolves no
// node_modules at runtime (fast cold start). The packages ship their own build of
// mesh-harness alone (scripts/package.mjs); the registrar's image ships dist/'s.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from './lib/build-info.mjs';
import { bundle } from './lib/bundle.mjs';

// Entry points: output name -> source. Add new programs here.
const entries = {
  'mesh-harness': 'src/cli/main.ts',
  // The cluster-side service (mesh-registrar run).
  'mesh-registrar': 'src/registrar/main.ts',
  // The harness's probe runner: httpGet/tcpSocket/grpc checks as probes.execUser, a supervised child.
  'probe-runner': 'src/probes/runner/main.ts',
  // The playground's Workload API server when no SPIRE is installed (mesh-harness demo spawns it).
  'dev-workload-api': 'src/dev/workload-api/main.ts',
  // The playground's and the tests' stand-in for linkerd2-proxy (never the production path).
  'dev-proxy': 'src/dev/proxy/main.ts',
  // The playground's cluster side: a registrar over a kube-apiserver or the embedded store, printing its ExternalWorkload events.
  'dev-cluster': 'src/dev/cluster/main.ts',
};

// Chunk names carry a content hash: without this, every change would leave the old chunks
// behind, and the registrar's image (which ships the chunks its entry imports) could pick
// up a stale one.
await rm(join(repoRoot, 'dist', 'chunks'), { recursive: true, force: true });
await bundle({ entries, outdir: join(repoRoot, 'dist') });
