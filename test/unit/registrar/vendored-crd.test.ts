// The demo and the embedded store read the repository's copy of Linkerd's ExternalWorkload
// CRD; it must stay byte-identical (below its provenance comment) to the project's spec.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, sharedSpec } from '../../helpers/specs.ts';

t.test('deploy/linkerd/external-workload.crd.yaml is the upstream CRD unchanged', async (t) => {
  const vendored = readFileSync(join(REPO_ROOT, 'deploy', 'linkerd', 'external-workload.crd.yaml'), 'utf8');
  const body = vendored.split('\n').filter((line, i, lines) => !(line.startsWith('# ') && lines.slice(0, i).every((l) => l.startsWith('# ')))).join('\n');
  t.equal(body, readFileSync(sharedSpec('external-workload.crd.yaml'), 'utf8'));
});
