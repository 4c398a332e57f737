/**
 * `mesh-harness check`, identity area, against real failures: a Workload API socket that
 * is absent, one serving another ID, a trust anchor from another CA, no anchors file.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DevCa } from '../../src/dev/ca.ts';
import { failures, healthyWorld, runCheck, SPIFFE_ID, TRUST_DOMAIN } from '../helpers/check-world.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

t.test('socket absent', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'nosock');
  const run = await runCheck(world, { identity: { workloadApiSocket: `unix://${world.dir}/absent.sock` } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['identity.svid']);
  const svid = run.find('identity.svid');
  t.match(svid.message, `Workload API socket ${world.dir}/absent.sock does not exist; is spire-agent running?`);
  t.match(svid.hint, /^start spire-agent \(systemctl status spire-agent, or spire\.mode managed\), or set identity\.workloadApiSocket/);
  t.equal(svid.runbook, 'docs/operations.md#check-identity-svid');
  for (const id of ['identity.chain', 'identity.expiry', 'identity.clock']) t.equal(run.find(id).result, 'skipped', id);
});

t.test('the Workload API serves another ID', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'otherid');
  const run = await runCheck(world, { identity: { spiffeId: `spiffe://${TRUST_DOMAIN}/vm/db` } });
  t.same(failures(run), ['identity.svid']);
  t.match(run.find('identity.svid'), { message: `serves ${SPIFFE_ID} but not spiffe://${TRUST_DOMAIN}/vm/db`, hint: /registration entry .* must have -spiffeID spiffe:\/\/root\.linkerd\.cluster\.local\/vm\/db/ });
});

t.test('wrong trust anchor: the dev CA signs, the anchors file holds another CA', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'anchor');
  const other = await DevCa.create({ trustDomain: TRUST_DOMAIN, commonName: 'some other root' });
  const otherAnchors = join(world.dir, 'other-anchors.pem');
  writeFileSync(otherAnchors, other.bundlePem);
  const run = await runCheck(world, { identity: { trustAnchorsFile: otherAnchors } });
  t.equal(run.exitCode, 1);
  t.same(failures(run), ['identity.chain']);
  const chain = run.find('identity.chain');
  t.match(chain.message, `does not verify against any trust anchor in ${otherAnchors}`);
  t.match(chain.message, 'trust anchors: CN=some other root');
  t.match(chain.hint, /holds the wrong anchor .* UpstreamAuthority/);
  t.equal(run.find('identity.trust-anchors').result, 'success');
});

t.test('trust anchors file missing', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'noanchor');
  const run = await runCheck(world, { identity: { trustAnchorsFile: `${world.dir}/nope.pem` } });
  t.same(failures(run), ['identity.trust-anchors']);
  t.match(run.find('identity.trust-anchors'), { message: `trust anchors file ${world.dir}/nope.pem does not exist`, hint: /write the Linkerd trust anchor/ });
  t.match(run.find('identity.chain'), { result: 'skipped', message: /no usable trust anchors/ });
});

