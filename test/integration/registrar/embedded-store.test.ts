/**
 * The store contract suite against the embedded store (the demo's store): the same checks
 * KubeStore passes on a real kube-apiserver, with the same CRD files.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { EmbeddedStore } from '../../../src/registrar/embedded-store.ts';
import { REGISTRAR_NAMESPACE } from '../../helpers/kube.ts';
import { externalWorkloadCrd } from '../../../src/dev/kube-apiserver.ts';
import { REPO_ROOT } from '../../helpers/specs.ts';
import { storeContractSuite } from './store-suite.ts';

const crds = [readFileSync(externalWorkloadCrd(REPO_ROOT), 'utf8'), readFileSync(join(REPO_ROOT, 'deploy', 'kubernetes', 'externalgroup.crd.yaml'), 'utf8')];

storeContractSuite(t, {
  name: 'EmbeddedStore',
  async open(t) {
    const store = new EmbeddedStore({ crds, leaseNamespace: REGISTRAR_NAMESPACE });
    t.teardown(() => store.stop());
    await store.start();
    return {
      store,
      namespace: 'mh-store',
      createGroup: async (group) => {
        await store.applyGroup(group);
      },
    };
  },
});
