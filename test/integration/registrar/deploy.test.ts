/**
 * deploy/kubernetes on a real kube-apiserver: it applies with `kubectl apply -k` (the cluster
 * helper does exactly that), the example group is valid, the ExternalGroup schema refuses
 * what it should, and the registrar's RBAC allows what the store needs and nothing else.
 */
import { join } from 'node:path';
import t from 'tap';
import { KubeCluster, REGISTRAR_NAMESPACE, SKIP_WITHOUT_KUBE } from '../../helpers/kube.ts';
import { REPO_ROOT } from '../../helpers/specs.ts';

t.test('deploy/kubernetes', { skip: SKIP_WITHOUT_KUBE }, async (t) => {
  const cluster = await KubeCluster.start(t);

  t.test('applies again, and the example group applies after it', async (t) => {
    const again = await cluster.kubectl(['apply', '-k', join(REPO_ROOT, 'deploy', 'kubernetes')]);
    t.notMatch(again.stdout, /created/, `a second apply creates nothing new:\n${again.stdout}`);
    await cluster.kubectl(['apply', '-k', join(REPO_ROOT, 'deploy', 'kubernetes', 'example')]);
    const { stdout } = await cluster.kubectl(['get', 'externalgroup', 'billing', '-n', 'default', '-o', 'json']);
    const group = JSON.parse(stdout) as { spec: { maxWorkloadsPerIdentity: number; allowCustomNames: boolean; nameTakeover: string; template: { serverName: string; ports: Array<{ protocol?: string }> } } };
    t.equal(group.spec.template.ports[0]?.protocol, 'TCP', 'defaults from the schema');
    t.equal(group.spec.maxWorkloadsPerIdentity, 1, 'one workload per identity unless the group says more');
    t.equal(group.spec.allowCustomNames, false, 'derived names only unless the group says otherwise');
    t.equal(group.spec.nameTakeover, 'AfterGrace');
    t.equal(group.spec.template.serverName, 'billing.default.vm.cluster.local', 'the example says which server name its machines present');
    const deployment = JSON.parse((await cluster.kubectl(['get', 'deployment', 'mesh-registrar', '-n', REGISTRAR_NAMESPACE, '-o', 'json'])).stdout) as { spec: { replicas: number; template: { spec: { serviceAccountName: string } } } };
    t.equal(deployment.spec.replicas, 2);
    t.equal(deployment.spec.template.spec.serviceAccountName, 'mesh-registrar');
    await cluster.kubectl(['get', 'poddisruptionbudget', 'mesh-registrar', '-n', REGISTRAR_NAMESPACE]);
    const service = (name: string) => cluster.kubectl(['get', 'service', name, '-n', REGISTRAR_NAMESPACE, '-o', 'json']).then((r) => JSON.parse(r.stdout) as { spec: { type: string; ports: Array<{ name: string; port: number }> } });
    t.same((await service('mesh-registrar')).spec.ports.map((p) => [p.name, p.port]), [['grpc', 8443]], 'the Service the VMs reach carries gRPC only');
    const admin = await service('mesh-registrar-admin');
    t.same(admin.spec.ports.map((p) => [p.name, p.port]), [['admin', 9990]], 'the admin port has a Service of its own');
    t.equal(admin.spec.type, 'ClusterIP');
    const policy = JSON.parse((await cluster.kubectl(['get', 'networkpolicy', 'mesh-registrar', '-n', REGISTRAR_NAMESPACE, '-o', 'json'])).stdout) as { spec: { podSelector: unknown; policyTypes: string[]; ingress: Array<{ from?: unknown[]; ports: Array<{ port: string }> }> } };
    t.same(policy.spec.podSelector, { matchLabels: { 'app.kubernetes.io/name': 'mesh-registrar' } });
    t.same(policy.spec.policyTypes, ['Ingress'], 'ingress not listed is denied');
    const rule = (port: string) => policy.spec.ingress.find((r) => r.ports.some((p) => p.port === port));
    t.equal(rule('grpc')?.from, undefined, 'gRPC from anywhere (the VMs are outside the cluster)');
    t.same(rule('admin')?.from, [{ namespaceSelector: {} }], 'admin from pods of this cluster only');
  });

  t.test('the ExternalGroup schema refuses invalid groups', async (t) => {
    const group = (spec: unknown) => JSON.stringify({ apiVersion: 'meshexpansion.dev/v1alpha1', kind: 'ExternalGroup', metadata: { name: 'bad', namespace: 'default' }, spec });
    const template = { metadata: { labels: { app: 'x' } } };
    const cases: Array<[string, unknown, RegExp]> = [
      ['no allowed identities', { allowedIdentities: [], template }, /allowedIdentities/],
      ['an identity that is not a SPIFFE ID', { allowedIdentities: ['https://example.org/vm'], template }, /allowedIdentities/],
      ['a port out of range', { allowedIdentities: ['spiffe://example.org/vm/*'], template: { ports: [{ port: 70000 }] } }, /port/],
      ['a probe with two handlers', { allowedIdentities: ['spiffe://example.org/vm/*'], template, probes: [{ httpGet: { port: 80 }, tcpSocket: { port: 80 } }] }, /exactly one of/],
      ['a probe with no handler', { allowedIdentities: ['spiffe://example.org/vm/*'], template, probes: [{ periodSeconds: 5 }] }, /exactly one of/],
      ['no workload per identity', { allowedIdentities: ['spiffe://example.org/vm/*'], template, maxWorkloadsPerIdentity: 0 }, /maxWorkloadsPerIdentity/],
      ['an allowed IP that is not a CIDR', { allowedIdentities: ['spiffe://example.org/vm/*'], template, allowedIPs: ['10.0.0.1'] }, /allowedIPs/],
      ['an unknown takeover policy', { allowedIdentities: ['spiffe://example.org/vm/*'], template, nameTakeover: 'Always' }, /nameTakeover/],
      ['a server name that is not a DNS name', { allowedIdentities: ['spiffe://example.org/vm/*'], template: { ...template, serverName: 'Web VM' } }, /serverName/],
    ];
    for (const [what, spec, reason] of cases) {
      const result = await cluster.kubectl(['create', '-f', '-'], { input: group(spec), reject: false });
      t.not(result.exitCode, 0, `${what} is refused`);
      t.match(result.stderr, reason, `${what}: ${result.stderr.trim()}`);
    }
  });

  t.test('the registrar RBAC allows what the store needs', async (t) => {
    const allowed: string[][] = [
      ...['get', 'list', 'watch', 'create', 'update', 'delete'].map((verb) => [verb, 'externalworkloads.workload.linkerd.io', '-n', 'default']),
      ['list', 'externalworkloads.workload.linkerd.io', '--all-namespaces'],
      ['update', 'externalworkloads.workload.linkerd.io', '--subresource=status', '-n', 'default'],
      ...['get', 'list', 'watch'].map((verb) => [verb, 'externalgroups.meshexpansion.dev', '--all-namespaces']),
      ...['get', 'list', 'watch', 'create', 'update', 'delete'].map((verb) => [verb, 'leases.coordination.k8s.io', '-n', REGISTRAR_NAMESPACE]),
      ...['get', 'list', 'watch'].map((verb) => [verb, 'configmaps/linkerd-config', '-n', 'linkerd']),
    ];
    for (const args of allowed) {
      const { stdout } = await cluster.kubectl(['auth', 'can-i', ...args], { kubeconfig: cluster.registrarKubeconfig, reject: false });
      t.equal(stdout.trim(), 'yes', `may ${args.join(' ')}`);
    }
    // And for real, not only by review: the linkerd-config read the registrar does.
    await cluster.kubectl(['create', 'configmap', 'linkerd-config', '-n', 'linkerd', '--from-literal=values=defaultInboundPolicy: all-unauthenticated']);
    const read = await cluster.kubectl(['get', 'configmap', 'linkerd-config', '-n', 'linkerd', '-o', 'name'], { kubeconfig: cluster.registrarKubeconfig });
    t.equal(read.stdout.trim(), 'configmap/linkerd-config');
    const listed = await cluster.kubectl(['get', 'configmaps', '-n', 'linkerd', '--field-selector', 'metadata.name=linkerd-config', '-o', 'name'], { kubeconfig: cluster.registrarKubeconfig });
    t.equal(listed.stdout.trim(), 'configmap/linkerd-config', 'listing it by name works (what a watch on it needs)');
  });

  t.test('the registrar RBAC allows nothing more', async (t) => {
    const denied: string[][] = [
      ['get', 'secrets', '-n', REGISTRAR_NAMESPACE],
      ['list', 'secrets', '--all-namespaces'],
      ['list', 'pods', '--all-namespaces'],
      ['create', 'pods', '-n', REGISTRAR_NAMESPACE],
      ['create', 'externalgroups.meshexpansion.dev', '-n', 'default'],
      ['update', 'externalgroups.meshexpansion.dev', '-n', 'default'],
      ['delete', 'externalgroups.meshexpansion.dev', '-n', 'default'],
      ['create', 'leases.coordination.k8s.io', '-n', 'default'],
      ['delete', 'leases.coordination.k8s.io', '-n', 'default'],
      ['list', 'configmaps', '-n', 'linkerd'],
      ['get', 'configmaps/linkerd-identity-trust-roots', '-n', 'linkerd'],
      ['update', 'configmaps/linkerd-config', '-n', 'linkerd'],
      ['get', 'configmaps', '-n', REGISTRAR_NAMESPACE],
      ['create', 'customresourcedefinitions.apiextensions.k8s.io'],
      ['create', 'rolebindings.rbac.authorization.k8s.io', '-n', REGISTRAR_NAMESPACE],
      // The registrar writes whole objects with a resourceVersion precondition; patch is never needed.
      ['patch', 'externalworkloads.workload.linkerd.io', '-n', 'default'],
      ['patch', 'externalworkloads.workload.linkerd.io', '--subresource=status', '-n', 'default'],
    ];
    for (const args of denied) {
      const { stdout } = await cluster.kubectl(['auth', 'can-i', ...args], { kubeconfig: cluster.registrarKubeconfig, reject: false });
      t.equal(stdout.trim(), 'no', `may not ${args.join(' ')}`);
    }
    const secrets = await cluster.kubectl(['get', 'secrets', '-n', REGISTRAR_NAMESPACE], { kubeconfig: cluster.registrarKubeconfig, reject: false });
    t.not(secrets.exitCode, 0, 'reading secrets fails for real');
    t.match(secrets.stderr, /forbidden/i);
    const pods = await cluster.kubectl(['get', 'pods', '-A'], { kubeconfig: cluster.registrarKubeconfig, reject: false });
    t.match(pods.stderr, /forbidden/i, 'listing pods fails for real');
    // A patch for real, on an object that exists (as admin), refused for the registrar's account.
    await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'workload.linkerd.io/v1beta1', kind: 'ExternalWorkload', metadata: { name: 'patch-me', namespace: 'default' }, spec: { meshTLS: { identity: 'spiffe://root.linkerd.cluster.local/vm/x', serverName: 'x.vm.example' }, workloadIPs: [{ ip: '192.0.2.1' }] } }) });
    t.teardown(() => cluster.kubectl(['delete', 'externalworkload', 'patch-me', '-n', 'default', '--ignore-not-found']));
    for (const subresource of [[], ['--subresource=status']]) {
      const patch = await cluster.kubectl(['patch', 'externalworkload', 'patch-me', '-n', 'default', '--type=merge', '-p', '{"metadata":{"labels":{"app":"hijacked"}}}', ...subresource], { kubeconfig: cluster.registrarKubeconfig, reject: false });
      t.not(patch.exitCode, 0, `patch${subresource.length ? ' status' : ''} fails for real`);
      t.match(patch.stderr, /forbidden/i);
    }
  });
});
