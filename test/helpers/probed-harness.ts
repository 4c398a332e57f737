/**
 * The harness's probes and registration wired together as src/harness/wiring.ts does,
 * over real mutual TLS with a dev-CA SVID; linkerd2-proxy is the one stand-in (always
 * ready). For tests and benchmarks that read the ExternalWorkload's Ready condition.
 */
import { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import type { HarnessConfig } from '../../src/config/types.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { ProbesComponent } from '../../src/probes/component.ts';
import type { FlapDamping } from '../../src/probes/readiness.ts';
import { RegistrationComponent, type RegistrarSettings } from '../../src/registration/component.ts';
import { ProbedReadiness } from '../../src/registration/readiness.ts';
import type { Pki } from './registrar.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

class ReadyProxy extends EventEmitter {
  state() {
    return { name: 'proxy', phase: 'Ready' as const, ready: true, since: new Date(), message: 'running and ready' };
  }
}

export async function startProbedHarness(t: Teardown, options: { pki: Pki; config: HarnessConfig; damping?: FlapDamping }): Promise<{ probes: ProbesComponent; registration: RegistrationComponent }> {
  const { pki, config } = options;
  const probes = new ProbesComponent({ config, log: silentLogger(), registry: new Registry(), ...(options.damping ? { damping: options.damping } : {}) });
  const svid = await pki.svid(config.identity.spiffeId);
  const validated = { spiffeId: svid.spiffeId, svid: { spiffeId: svid.spiffeId, chain: svid.chain.map((pem) => new X509Certificate(pem)), keyPem: svid.keyPem, bundle: [], hint: '' } };
  const registration = new RegistrationComponent({
    config,
    log: silentLogger(),
    registry: new Registry(),
    identity: { current: () => validated, waitForSvid: async () => validated },
    readiness: new ProbedReadiness(new ReadyProxy() as never, probes),
    trustAnchorsPem: () => pki.anchorsPem,
    machineId: `machine-${config.workload.nodeName}`,
    backoff: { baseMs: 100, maxMs: 1000 },
  });
  registration.on('settings', (settings: RegistrarSettings) => probes.setClusterProbes({ probes: settings.probes, group: `${config.workload.namespace}/${config.workload.group}` }));
  t.teardown(async () => {
    await registration.stop();
    await probes.stop();
  });
  await probes.start();
  await registration.start();
  return { probes, registration };
}
