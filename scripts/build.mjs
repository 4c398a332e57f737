// Bundles each program into one file under dist/ so that starting it resolves no
// node_modules at runtime (fast cold start, and packages ship dist/ + proto/ only).
import { build } from 'esbuild';
import { readFile, rm } from 'node:fs/promises';

const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));

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
// behind, and `npm run package` (which ships dist/chunks) would carry them.
await rm(new URL('../dist/chunks', import.meta.url), { recursive: true, force: true });

await build({
  entryPoints: entries,
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // One chunk per command: a command loads only the code it needs.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  sourcemap: 'linked',
  // koffi loads its native binary from its own package; it is imported lazily, only under systemd.
  external: ['koffi'],
  legalComments: 'none',
  logLevel: 'warning',
  define: { MESH_HARNESS_VERSION: JSON.stringify(pkg.version) },
  // Some CommonJS dependencies call require() for Node built-ins; give the ESM bundle one.
  banner: {
    js: "import { createRequire as __meshCreateRequire } from 'node:module'; const require = __meshCreateRequire(import.meta.url);",
  },
});
