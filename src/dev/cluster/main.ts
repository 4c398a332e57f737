/**
 * The demo's "cluster": one mesh-registrar replica over the store its config names. With
 * the embedded store (the real CRD schemas, in memory) it applies the ExternalGroup given
 * as a JSON file itself; with the kube store (a real API server the demo started) the
 * group is already applied by the cluster admin, as the registrar's RBAC only reads groups,
 * and this waits until its cache has it. Either way it then prints one JSON line
 * {"type":"group"} and every ExternalWorkload event as one JSON line on stdout, which is
 * how `mesh-harness demo` watches the cluster. Runs until SIGTERM or SIGINT. Never the
 * production path (that is `mesh-registrar run`).
 *
 * usage: dev-cluster --config REGISTRAR.json --group GROUP.json
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger } from '../../log/logger.ts';
import { loadRegistrarConfig } from '../../registrar/config.ts';
import { EmbeddedStore } from '../../registrar/embedded-store.ts';
import { createStore, Registrar } from '../../registrar/registrar.ts';
import type { ExternalGroup, ExternalWorkload, RegistrarStore } from '../../registrar/store.ts';

/** The group as the store has it, once its cache does. */
function groupInStore(store: RegistrarStore, namespace: string, name: string): Promise<ExternalGroup> {
  return new Promise((resolve) => {
    const check = () => {
      const group = store.getGroup(namespace, name);
      if (!group) return;
      unsubscribe();
      resolve(group);
    };
    const unsubscribe = store.subscribe((event) => {
      if (event.kind === 'ExternalGroup') check();
    });
    check();
  });
}

/** As `kubectl get -o yaml` shows an object: without metadata.managedFields. */
function forDisplay(workload: ExternalWorkload): ExternalWorkload {
  const { managedFields: _managedFields, ...metadata } = workload.metadata as ExternalWorkload['metadata'] & { managedFields?: unknown };
  return { ...workload, metadata };
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { config: { type: 'string' }, group: { type: 'string' } }, strict: true });
  if (!values.config || !values.group) {
    process.stderr.write('usage: dev-cluster --config REGISTRAR.json --group GROUP.json\n');
    return 64;
  }
  const config = loadRegistrarConfig(values.config);
  // Logs go to stderr: stdout carries only the event lines the demo reads.
  const log = createLogger({ level: 'info', format: 'json', component: 'registrar', destination: process.stderr });
  const store = await createStore(config, log);
  const registrar = new Registrar({ config, log, store });
  await registrar.start();
  store.subscribe((event) => {
    if (event.kind === 'ExternalWorkload') process.stdout.write(`${JSON.stringify({ type: event.type, object: forDisplay(event.object) })}\n`);
  });
  const group = JSON.parse(readFileSync(values.group, 'utf8')) as ExternalGroup;
  const applied = store instanceof EmbeddedStore
    ? await store.applyGroup(group)
    : await groupInStore(store, group.metadata.namespace, group.metadata.name);
  process.stdout.write(`${JSON.stringify({ type: 'group', object: applied, grpcPort: registrar.grpcPort })}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await registrar.stop();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`dev-cluster: ${err.message}\n`);
    process.exit(1);
  },
);
