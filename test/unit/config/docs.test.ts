import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderConfigurationDoc } from '../../../src/config/docs.ts';
import { schemaFields } from '../../../src/config/schema.ts';
import { repoRoot } from '../../helpers/cli.ts';

t.test('docs/configuration.md is what the generator produces from the schema', async (t) => {
  const committed = readFileSync(join(repoRoot, 'docs', 'configuration.md'), 'utf8');
  t.equal(committed, renderConfigurationDoc(), 'run `npm run docs` and commit docs/configuration.md');
});

t.test('every schema field is documented with its environment variable', async (t) => {
  const doc = renderConfigurationDoc();
  for (const [path] of schemaFields()) t.match(doc, `\`${path}\``, path);
  t.match(doc, 'MESH_HARNESS_IDENTITY_SPIFFE_ID');
});
