import t from 'tap';
import { parseLinkerdConfig } from '../../../src/registrar/cluster-facts.ts';
import type { ConfigMap } from '../../../src/registrar/store.ts';

const cm = (values: string | undefined): ConfigMap => ({ metadata: { name: 'linkerd-config', namespace: 'linkerd' }, data: values === undefined ? {} : { values } });

t.test("Linkerd's own values shape is read; CIDRs come out canonical", async (t) => {
  const parsed = parseLinkerdConfig(cm('clusterDomain: cluster.local\nclusterNetworks: "10.0.0.0/8, 100.64.0.0/10,fd00::/8"\nproxy:\n  defaultInboundPolicy: all-authenticated\n  logLevel: warn,linkerd=info\n'));
  t.same(parsed, { ok: true, facts: { defaultInboundPolicy: 'all-authenticated', clusterNetworks: ['10.0.0.0/8', '100.64.0.0/10', 'fd00::/8'] } });
});

t.test('untrusted input is refused with a reason', async (t) => {
  const cases: Array<[string | undefined, RegExp]> = [
    [undefined, /no "values" key/],
    ['clusterNetworks: [unclosed', /not YAML/],
    ['- a list', /not a YAML mapping/],
    ['clusterNetworks: 10.0.0.0/8\nproxy:\n  defaultInboundPolicy: allow-everything', /defaultInboundPolicy "allow-everything" is not one of/],
    ['clusterNetworks: 10.0.0.0/8', /defaultInboundPolicy undefined/],
    ['clusterNetworks: [10.0.0.0/8]\nproxy:\n  defaultInboundPolicy: deny', /comma-separated string/],
    ['clusterNetworks: "10.0.0.0/8,10.1.0.0/33"\nproxy:\n  defaultInboundPolicy: deny', /"10\.1\.0\.0\/33" is not a CIDR/],
    ['clusterNetworks: "10.0.0.1"\nproxy:\n  defaultInboundPolicy: deny', /"10\.0\.0\.1" is not a CIDR/],
    ['clusterNetworks: " , "\nproxy:\n  defaultInboundPolicy: deny', /1 to 64 CIDRs/],
    [`clusterNetworks: "${Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/16`).join(',')}"\nproxy:\n  defaultInboundPolicy: deny`, /1 to 64 CIDRs/],
    [`clusterNetworks: "10.0.0.0/8"\npad: "${'x'.repeat(300 * 1024)}"`, /larger than/],
    ['clusterNetworks: !!js/function "x"\nproxy:\n  defaultInboundPolicy: deny', /not YAML/],
  ];
  for (const [values, reason] of cases) {
    const parsed = parseLinkerdConfig(cm(values));
    t.equal(parsed.ok, false, JSON.stringify(values?.slice(0, 60)));
    if (!parsed.ok) t.match(parsed.reason, reason);
  }
  const absent = parseLinkerdConfig(undefined);
  t.equal(absent.ok, false);
  if (!absent.ok) t.match(absent.reason, /no ConfigMap linkerd-config/);
});

t.test("the control plane's proxy image: proxy.image.name with proxy.image.version, or linkerdVersion when that is empty", async (t) => {
  const base = 'clusterNetworks: "10.0.0.0/8"\nlinkerdVersion: edge-25.4.1\nproxy:\n  defaultInboundPolicy: deny\n  image:\n    name: cr.l5d.io/linkerd/proxy\n';
  const chartDefault = parseLinkerdConfig(cm(`${base}    version: ""\n`));
  t.same(chartDefault.ok && chartDefault.facts.proxyImage, { name: 'cr.l5d.io/linkerd/proxy', version: 'edge-25.4.1' });
  const pinned = parseLinkerdConfig(cm(`${base}    version: stable-2.14.10\n`));
  t.same(pinned.ok && pinned.facts.proxyImage, { name: 'cr.l5d.io/linkerd/proxy', version: 'stable-2.14.10' });
  const mirror = parseLinkerdConfig(cm(base.replace('cr.l5d.io/linkerd/proxy', 'registry.corp.example:5000/mirror/linkerd/proxy')));
  t.same(mirror.ok && mirror.facts.proxyImage, { name: 'registry.corp.example:5000/mirror/linkerd/proxy', version: 'edge-25.4.1' });

  // Unusable images are left out (the harness then needs --image); the other facts stand.
  for (const bad of [
    base.replace('cr.l5d.io/linkerd/proxy', '"cr.l5d.io/linkerd/proxy;rm -rf /"'),
    base.replace('cr.l5d.io/linkerd/proxy', 'cr.l5d.io/Linkerd/proxy'),
    base.replace('edge-25.4.1', '"edge 25"'),
    base.replace('edge-25.4.1', '"-x"'),
    base.replace('linkerdVersion: edge-25.4.1\n', ''),
    base.replace('    name: cr.l5d.io/linkerd/proxy\n', '    pullPolicy: ""\n'),
  ]) {
    const parsed = parseLinkerdConfig(cm(bad));
    t.equal(parsed.ok, true, bad);
    t.equal(parsed.ok && parsed.facts.proxyImage, undefined, bad);
  }

  // A linkerd-config whose policy is unusable still tells the image.
  const badPolicy = parseLinkerdConfig(cm(base.replace('deny', 'allow-everything')));
  t.equal(badPolicy.ok, false);
  t.same(!badPolicy.ok && badPolicy.proxyImage, { name: 'cr.l5d.io/linkerd/proxy', version: 'edge-25.4.1' });
});
