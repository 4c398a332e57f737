/**
 * Cold start and idle footprint of the bundled CLI:
 * - `mesh-harness version`, process start to exit;
 * - `mesh-harness run`, process start to the first 200 from /live;
 * - resident memory of an idle `run` (no children: the identity socket does not exist).
 */
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/tmp.ts';
import { median, percentile, rssMb, writeResults, type BenchRow } from './lib.ts';
import { DevCa } from '../src/dev/ca.ts';

const bin = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'bin', 'mesh-harness.mjs');


function live(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/live', timeout: 200 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}


const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MESH_HARNESS_') && k !== 'NOTIFY_SOCKET' && k !== 'NODE_OPTIONS')) as Record<string, string>;

async function main(): Promise<void> {
  const versionMs: number[] = [];
  for (let i = 0; i < 15; i++) {
    const start = performance.now();
    await execa(process.execPath, [bin, 'version'], { env, extendEnv: false, nodeOptions: [] });
    versionMs.push(performance.now() - start);
  }

  const dir = mkdtempSync(join(tmpdir(), 'mh-bench-'));
  // run checks the host before it starts: real trust anchors, an executable proxy path (the
  // proxy itself never starts here: no SVID).
  writeFileSync(join(dir, 'anchors.pem'), (await DevCa.create({ trustDomain: 'root.linkerd.cluster.local' })).bundlePem);
  const liveMs: number[] = [];
  const rss: number[] = [];
  try {
    for (let i = 0; i < 5; i++) {
      const port = await freePort();
      const config = join(dir, `config-${i}.json`);
      writeFileSync(config, JSON.stringify({
        identity: { spiffeId: 'spiffe://root.linkerd.cluster.local/vm/bench', serverName: 'bench.vm.cluster.local', workloadApiSocket: `unix://${dir}/none.sock`, trustAnchorsFile: `${dir}/anchors.pem` },
        proxy: { destinationAddr: 'dst.example:8086', user: 'nobody', group: 'nogroup', binary: '/bin/true' },
        iptables: { enabled: false },
        admin: { port },
        log: { level: 'warn', format: 'json' },
      }));
      const start = performance.now();
      const child = execa(process.execPath, [bin, 'run', '--config', config], { env, extendEnv: false, nodeOptions: [], reject: false });
      while (!(await live(port))) await new Promise((r) => setTimeout(r, 5));
      liveMs.push(performance.now() - start);
      // Idle: let start-up garbage settle before sampling.
      await new Promise((r) => setTimeout(r, 3000));
      rss.push(rssMb(child.pid!));
      child.kill('SIGTERM');
      await child;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const sorted = (v: number[]) => [...v].sort((a, b) => a - b);
  const rows: BenchRow[] = [
    { name: 'version cold start (median)', value: median(versionMs), unit: 'ms', detail: { samples: versionMs.length, p90: percentile(sorted(versionMs), 90) } },
    { name: 'run to /live 200 (median)', value: median(liveMs), unit: 'ms', detail: { samples: liveMs.length, max: Math.max(...liveMs), target: 300 } },
    { name: 'idle run RSS (median)', value: median(rss), unit: 'MB', detail: { samples: rss, target: 50 } },
  ];
  writeResults('startup', rows);
}

await main();
