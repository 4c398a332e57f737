import t from 'tap';
import { configuredWorkloadName, isDnsLabel, workloadName } from '../../../src/protocol/workload-name.ts';

const base = { namespace: 'shop', group: 'web', nodeName: 'vm-1', spiffeId: 'spiffe://root.linkerd.cluster.local/vm/web' };

t.test('the name is a pure function: same input, same name; readable prefix, hash suffix', async (t) => {
  t.equal(workloadName(base), workloadName({ ...base }));
  t.match(workloadName(base), /^web-vm-1-[0-9a-f]{10}$/);
});

t.test('unique per machine: node name, SPIFFE ID, group and namespace all change it', async (t) => {
  const names = new Set([
    workloadName(base),
    workloadName({ ...base, nodeName: 'vm-2' }),
    workloadName({ ...base, spiffeId: 'spiffe://root.linkerd.cluster.local/vm/api' }),
    workloadName({ ...base, group: 'api' }),
    workloadName({ ...base, namespace: 'other' }),
    // Parts that would join to the same text still differ.
    workloadName({ ...base, group: 'web-vm', nodeName: '1' }),
  ]);
  t.equal(names.size, 6);
});

t.test('always a DNS-1123 label of at most 63 characters, whatever the input', async (t) => {
  const inputs = [
    { ...base, nodeName: 'VM_1.Example.COM' },
    { ...base, group: 'g'.repeat(80), nodeName: 'n'.repeat(200) },
    { ...base, group: '', nodeName: '---' },
    { ...base, group: 'a-', nodeName: '-b' },
    { ...base, nodeName: 'ünïcode-höst' },
    { ...base, group: 'x'.repeat(52), nodeName: 'y' },
  ];
  for (const input of inputs) {
    const name = workloadName(input);
    t.ok(isDnsLabel(name), `${JSON.stringify(name)} is a DNS-1123 label`);
    t.ok(name.length <= 63);
  }
  t.equal(workloadName({ ...base, group: '', nodeName: '---' }).slice(0, 2), 'w-', 'nothing readable: a fixed prefix');
});

t.test('stable across IP changes: IPs are not an input', async (t) => {
  const config = { workload: { name: '', namespace: 'shop', group: 'web', nodeName: 'vm-1', ips: ['10.0.0.1'] }, identity: { spiffeId: base.spiffeId } };
  const moved = { ...config, workload: { ...config.workload, ips: ['10.9.9.9'] } };
  t.equal(configuredWorkloadName(config), configuredWorkloadName(moved));
  t.equal(configuredWorkloadName(config), workloadName(base));
});

t.test('workload.name overrides the derived name; no SPIFFE ID, no name', async (t) => {
  t.equal(configuredWorkloadName({ workload: { name: 'fixed', namespace: 'shop', group: 'web', nodeName: 'vm-1' }, identity: { spiffeId: base.spiffeId } }), 'fixed');
  t.equal(configuredWorkloadName({ workload: { name: '', namespace: 'shop', group: 'web', nodeName: 'vm-1' }, identity: { spiffeId: '' } }), '');
});
