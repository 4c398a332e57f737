import { Registry } from 'prom-client';
import { loadConfig } from '../../../src/config/load.ts';
import type { HarnessConfig } from '../../../src/config/types.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { ProbesComponent } from '../../../src/probes/component.ts';
import type { FlapDamping, Readiness } from '../../../src/probes/readiness.ts';
import { tempDir, writeJson } from '../../helpers/tmp.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A validated harness configuration, loaded the way the daemon loads it. */
export function probesConfig(t: Teardown, sections: Record<string, unknown>): HarnessConfig {
  const dir = tempDir(t, 'mh-probes-');
  return loadConfig({ path: writeJson(dir, 'config.json', sections), env: {} }).config;
}

export interface StartedProbes {
  probes: ProbesComponent;
  registry: Registry;
  /** Every readiness transition, in order, with the time it arrived. */
  transitions: Array<Readiness & { at: number }>;
  /** Resolves with the first transition to `ready` after the `since`-th (default: from now), failing after `timeoutMs`. */
  next(ready: boolean, timeoutMs: number, since?: number): Promise<Readiness & { at: number }>;
}

export async function startProbes(t: Teardown, config: HarnessConfig, damping?: FlapDamping): Promise<StartedProbes> {
  const registry = new Registry();
  const probes = new ProbesComponent({ config, log: silentLogger(), registry, ...(damping ? { damping } : {}) });
  const transitions: StartedProbes['transitions'] = [];
  probes.on('readiness', (r: Readiness) => transitions.push({ ...r, at: performance.now() }));
  t.teardown(() => probes.stop());
  await probes.start();
  const next = (ready: boolean, timeoutMs: number, seen = transitions.length) => {
    return new Promise<Readiness & { at: number }>((resolve, reject) => {
      const timer = setTimeout(() => {
        clearInterval(poll);
        reject(new Error(`no transition to ready=${ready} within ${timeoutMs} ms; workload: ${JSON.stringify(probes.readiness())}`));
      }, timeoutMs);
      const poll = setInterval(() => {
        const hit = transitions.slice(seen).find((r) => r.ready === ready);
        if (!hit) return;
        clearTimeout(timer);
        clearInterval(poll);
        resolve(hit);
      }, 10);
    });
  };
  return { probes, registry, transitions, next };
}
