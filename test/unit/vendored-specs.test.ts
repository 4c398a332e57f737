// The repository carries the upstream interfaces it is tested against (Linkerd's
// ExternalWorkload CRD, the SPIFFE Workload API proto): each is the upstream file unchanged
// below a provenance header, pinned here by commit and checksum, so a clone alone runs
// every test and an accidental edit of a vendored interface cannot go unnoticed.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, splitProvenance, VENDORED_SPECS } from '../helpers/specs.ts';

for (const spec of VENDORED_SPECS) {
  t.test(`${spec.path} is ${spec.upstream} at ${spec.commit.slice(0, 12)}, unchanged`, async (t) => {
    const { header, upstream } = splitProvenance(readFileSync(join(REPO_ROOT, spec.path), 'utf8'), spec.comment);
    t.match(header, spec.commit, 'the provenance header names the pinned commit');
    t.equal(createHash('sha256').update(upstream).digest('hex'), spec.sha256, 'the text below the header is the upstream file');
  });
}

t.test('the provenance header is told apart from the upstream text', async (t) => {
  t.same(splitProvenance('# from upstream\n# at abc\n---\nkind: X\n', '#'), { header: '# from upstream\n# at abc', upstream: '---\nkind: X\n' });
  t.same(splitProvenance('// from upstream\n\nsyntax = "proto3";\n', '//'), { header: '// from upstream\n', upstream: 'syntax = "proto3";\n' });
  t.same(splitProvenance('syntax = "proto3";\n', '//'), { header: '', upstream: 'syntax = "proto3";\n' });
});
