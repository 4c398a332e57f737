/**
 * A machine for `mesh-harness check` tests: a network namespace with its own DNS server
 * and a listener for the destination service, a development Workload API serving real
 * SVIDs from a throwaway CA and the matching trust anchor; and a runner for the built
 * CLI's check inside that namespace, returning the parsed JSON report.
 */
import { execa } from 'execa';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DevCa } from '../../src/dev/ca.ts';
import { DevWorkloadApiServer } from '../../src/dev/workload-api/server.ts';
import { silentLogger } from '../../src/log/logger.ts';
import type { CheckReport } from '../../src/check/render.ts';
import { harnessBin } from './cli.ts';
import { startDnsServer } from './dns.ts';
import { childEnv, createNetns, startListeners, type Netns } from './netns.ts';
import { tempDir } from './tmp.ts';

export const TRUST_DOMAIN = 'root.linkerd.cluster.local';
export const SPIFFE_ID = `spiffe://${TRUST_DOMAIN}/vm/web`;
export const DESTINATION = 'dst.mh-check.test';

interface Teardown {
  teardown(fn: () => unknown): void;
}
export type Json = Record<string, unknown>;
type CheckEntry = CheckReport['categories'][number]['checks'][number];

export interface World {
  ns: Netns;
  dir: string;
  anchorsFile: string;
  socketPath: string;
  config: Json;
}

export interface CheckRun {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  report: CheckReport;
  find(id: string, subject?: string): CheckEntry;
}

const ca = DevCa.create({ trustDomain: TRUST_DOMAIN });

function merge(base: Json, patch: Json): Json {
  const out: Json = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    out[key] = value && typeof value === 'object' && !Array.isArray(value) && typeof base[key] === 'object' ? merge(base[key] as Json, value as Json) : value;
  }
  return out;
}

/** Behaves like linkerd2-proxy started without its environment: no --version, exit 64. */
function fakeProxy(dir: string): string {
  const path = join(dir, 'linkerd2-proxy');
  writeFileSync(path, '#!/bin/sh\necho "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS must be set" >&2\nexit 64\n', { mode: 0o755 });
  return path;
}

/**
 * A machine where every check passes: a namespace whose DNS resolves the destination to a
 * listener on loopback, a Workload API serving the SVID, the matching trust anchor.
 */
export async function healthyWorld(t: Teardown, label: string): Promise<World> {
  const dir = tempDir(t, 'mh-check-');
  chmodSync(dir, 0o755);
  const anchorsFile = join(dir, 'anchors.pem');
  writeFileSync(anchorsFile, (await ca).bundlePem);
  const socketPath = join(dir, 'api.sock');
  const server = new DevWorkloadApiServer({ socketPath, ca: await ca, identities: [{ spiffeId: SPIFFE_ID }], ttlMs: 3_600_000, log: silentLogger() });
  await server.start();
  t.teardown(() => server.stop());

  const ns = await createNetns(t, `chk-${label}`);
  await startDnsServer(t, ns, { [DESTINATION]: '127.0.0.1' });
  await startListeners(t, ns, [{ port: 8086, reply: 'destination' }]);
  const config: Json = {
    workload: { group: 'web', namespace: 'default' },
    identity: { spiffeId: SPIFFE_ID, serverName: 'web.default.vm.cluster.local', workloadApiSocket: `unix://${socketPath}`, trustAnchorsFile: anchorsFile },
    proxy: { binary: fakeProxy(dir), destinationAddr: `${DESTINATION}:8086` },
  };
  return { ns, dir, anchorsFile, socketPath, config };
}

/**
 * Runs the built CLI's check inside the namespace (optionally behind a command such as
 * setpriv). The bound is 30 s unless `bound` says otherwise (false: the default 5 s): on a
 * machine shared by many test runs, the checks that must pass may be slow to answer.
 */
export async function runCheck(world: World, patch: Json = {}, options: { wrapper?: string[]; output?: 'json' | 'table'; timeoutMs?: number; bound?: string | false } = {}): Promise<CheckRun> {
  const path = join(world.dir, `config-${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(path, JSON.stringify(merge(world.config, patch), null, 2));
  const argv = [...world.ns.prefix.slice(1), ...(options.wrapper ?? []), process.execPath, harnessBin, 'check', '--config', path, '--output', options.output ?? 'json', ...(options.bound === false ? [] : ['--timeout', options.bound ?? '30s'])];
  const result = await execa(world.ns.prefix[0]!, argv, { env: childEnv(), extendEnv: false, reject: false, timeout: options.timeoutMs ?? 90_000 });
  const stdout = String(result.stdout);
  const report = (options.output ?? 'json') === 'json' ? (JSON.parse(stdout) as CheckReport) : ({ categories: [] } as unknown as CheckReport);
  return {
    exitCode: result.exitCode,
    stdout,
    stderr: String(result.stderr),
    report,
    find(id, subject) {
      const entry = report.categories.flatMap((c) => c.checks).find((c) => c.id === id && (subject === undefined || c.subject === subject));
      if (!entry) throw new Error(`no check ${id}${subject ? ` (${subject})` : ''} in ${stdout}`);
      return entry;
    },
  };
}

/** Failed checks as id(subject), for comparing whole sets. */
export function failures(run: CheckRun): string[] {
  return run.report.categories.flatMap((c) => c.checks).filter((c) => c.result === 'error').map((c) => `${c.id}${c.subject ? `(${c.subject})` : ''}`);
}
