#!/usr/bin/env node
// Moves the Node.js runtime the packages and the registrar image embed
// (packaging/node-runtime.json) to a newer release: by default the newest one of the pinned
// major (LTS) line that the npm registry serves for both architectures, with each
// package's registry integrity hash. The next `npm run package` downloads and checks it.
//
// usage: node scripts/bump-node-runtime.mjs [VERSION]     (VERSION: 24.22.3, or a major: 26)
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BuildError, repoRoot, runScript } from './lib/build-info.mjs';
import { runtime } from './lib/node-runtime.mjs';

const FILE = join(repoRoot, 'packaging', 'node-runtime.json');

function npmView(spec, field) {
  let out;
  try {
    out = execFileSync('npm', ['view', spec, field, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    throw new BuildError(`npm view ${spec} ${field} failed: ${String(error.stderr || error.message).trim().split('\n')[0]}`, 69);
  }
  if (out.trim() === '') throw new BuildError(`the npm registry has no ${spec}`, 1);
  return JSON.parse(out);
}

/** Numeric comparison of x.y.z versions. */
function compare(a, b) {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

/** Every release of `range` the registry serves for one package (npm answers a string for one match). */
function versions(name, range) {
  const listed = npmView(`${name}@${range}`, 'version');
  return (Array.isArray(listed) ? listed : [listed]).filter((v) => /^\d+\.\d+\.\d+$/.test(v));
}

await runScript('bump-node-runtime', async () => {
  const wanted = process.argv[2] ?? String(runtime.version.split('.')[0]);
  if (!/^\d+(\.\d+\.\d+)?$/.test(wanted)) throw new BuildError(`expected a version such as 24.22.3 or a major such as 24, got "${wanted}"\nusage: node scripts/bump-node-runtime.mjs [VERSION]`, 64);
  const names = Object.values(runtime.packages).map((p) => p.name);
  // The newest release every architecture's package has.
  const common = names.map((name) => new Set(versions(name, wanted))).reduce((a, b) => new Set([...a].filter((v) => b.has(v))));
  const version = [...common].sort(compare).at(-1);
  if (!version) throw new BuildError(`no release of Node.js ${wanted} is served for all of ${names.join(', ')}`);
  const packages = Object.fromEntries(Object.entries(runtime.packages).map(([arch, { name }]) => [arch, { name, integrity: npmView(`${name}@${version}`, 'dist.integrity') }]));
  for (const [arch, { integrity }] of Object.entries(packages)) {
    if (!/^sha512-[A-Za-z0-9+/]+=*$/.test(integrity)) throw new BuildError(`${packages[arch].name}@${version}: unexpected integrity "${integrity}"`);
  }
  writeFileSync(FILE, `${JSON.stringify({ ...runtime, version, packages }, null, 2)}\n`);
  process.stdout.write(version === runtime.version ? `packaging/node-runtime.json: already Node.js ${version}\n` : `packaging/node-runtime.json: Node.js ${runtime.version} -> ${version}\n`);
});
