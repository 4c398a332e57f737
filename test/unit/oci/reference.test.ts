import t from 'tap';
import { apiHost, formatReference, parseReference, ReferenceError } from '../../../src/oci/reference.ts';

t.test('references as Docker and OCI tools write them', async (t) => {
  const digest = `sha256:${'a'.repeat(64)}`;
  const cases: Array<[string, { registry: string; repository: string; tag?: string; digest?: string }]> = [
    ['cr.l5d.io/linkerd/proxy:edge-25.4.1', { registry: 'cr.l5d.io', repository: 'linkerd/proxy', tag: 'edge-25.4.1' }],
    [`cr.l5d.io/linkerd/proxy@${digest}`, { registry: 'cr.l5d.io', repository: 'linkerd/proxy', digest }],
    [`cr.l5d.io/linkerd/proxy:stable-2.14.10@${digest}`, { registry: 'cr.l5d.io', repository: 'linkerd/proxy', tag: 'stable-2.14.10', digest }],
    ['127.0.0.1:5000/linkerd/proxy:t', { registry: '127.0.0.1:5000', repository: 'linkerd/proxy', tag: 't' }],
    ['localhost/proxy', { registry: 'localhost', repository: 'proxy', tag: 'latest' }],
    ['[::1]:5000/a/b:c', { registry: '[::1]:5000', repository: 'a/b', tag: 'c' }],
    ['buoyantio/proxy:1', { registry: 'docker.io', repository: 'buoyantio/proxy', tag: '1' }],
    ['debian', { registry: 'docker.io', repository: 'library/debian', tag: 'latest' }],
    ['index.docker.io/debian:12', { registry: 'docker.io', repository: 'library/debian', tag: '12' }],
    ['Registry/x', { registry: 'Registry', repository: 'x', tag: 'latest' }],
  ];
  for (const [text, expected] of cases) t.same(parseReference(text), expected, text);
  t.equal(formatReference(parseReference('debian')), 'docker.io/library/debian:latest');
  t.equal(apiHost('docker.io'), 'registry-1.docker.io');
  t.equal(apiHost('cr.l5d.io'), 'cr.l5d.io');
});

t.test('bad references are refused with the reason', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['cr.l5d.io/linkerd/Proxy:1', /"Proxy" .* is not a repository path component/],
    ['cr.l5d.io/linkerd//proxy', /"" .* is not a repository path component/],
    ['cr.l5d.io/linkerd/proxy:-1', /"-1" is not a tag/],
    ['cr.l5d.io/linkerd/proxy:a b', /is not a tag/],
    ['cr.l5d.io/linkerd/proxy@sha256:abc', /is not a digest/],
    ['cr.l5d.io/linkerd/proxy@md5:' + 'a'.repeat(32), /is not a digest/],
    ['-bad.host/x', /is not a registry/],
    [`x/${'a'.repeat(260)}`, /longer than 255/],
  ];
  for (const [text, reason] of cases) t.throws(() => parseReference(text), { name: 'ReferenceError', message: reason }, text);
  t.ok(new ReferenceError('x') instanceof Error);
});
