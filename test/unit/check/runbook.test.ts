import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.ts';
import { systemEffects } from '../../../src/check/effects.ts';
import { planChecks } from '../../../src/check/plan.ts';
import { runbookAnchor } from '../../../src/check/render.ts';
import { repoRoot } from '../../helpers/cli.ts';

t.test('every check a configuration can produce has its runbook entry in docs/operations.md', async (t) => {
  // Every optional part switched on, so the plan holds every kind of check.
  const loaded = loadConfig({
    env: {},
    defaultPath: '/nonexistent/mesh-harness-check-runbook.json',
    sets: [
      'identity.spiffeId=spiffe://root.linkerd.cluster.local/vm/web',
      'identity.serverName=web.vm.cluster.local',
      'proxy.destinationAddr=dst.example:8086',
      'control.registrarAddress=registrar.example:8443',
      'spire.mode=managed',
      'spire.serverAddress=spire.example',
      'spire.trustBundleFile=/etc/mesh-harness/trust-anchors.pem',
    ],
  });
  const checks = planChecks({ ok: true, loaded }, systemEffects({ env: {} }));
  const ids = [...new Set(checks.map((c) => c.id))];
  t.ok(ids.length >= 19, `${ids.length} distinct checks`);
  const doc = readFileSync(join(repoRoot, 'docs', 'operations.md'), 'utf8');
  for (const id of ids) {
    const anchor = runbookAnchor(id).split('#')[1]!;
    t.ok(doc.includes(`<a id="${anchor}"></a>`), `docs/operations.md has <a id="${anchor}"> for ${id}`);
  }
});
