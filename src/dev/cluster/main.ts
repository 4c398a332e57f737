/**
 * The demo's "cluster": one mesh-registrar replica over the embedded store (the real CRD
 * schemas, in memory), started with the ExternalGroup given as a JSON file already
 * applied. Every ExternalWorkload event is printed to stdout as one JSON line, which is
 * how `mesh-harness demo` watches the cluster without an API server. Runs until SIGTERM
 * or SIGINT. Never the production path (that is `mesh-registrar run`).
 *
 * usage: dev-cluster --config REGISTRAR.json --group GROUP.json
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger } from '../../log/logger.ts';
import { loadRegistrarConfig } from '../../registrar/config.ts';
import { EmbeddedStore } from '../../registrar/embedded-store.ts';
import { createStore, Registrar } from '../../registrar/registrar.ts';
import type { ExternalGroup } from '../../registrar/store.ts';

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
  if (!(store instanceof EmbeddedStore)) throw new Error('the demo cluster runs the embedded store (store.kind "embedded")');
  const registrar = new Registrar({ config, log, store });
  await registrar.start();
  store.subscribe((event) => {
    if (event.kind === 'ExternalWorkload') process.stdout.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
  });
  const group = JSON.parse(readFileSync(values.group, 'utf8')) as ExternalGroup;
  const applied = await store.applyGroup(group);
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
