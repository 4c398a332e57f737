/**
 * `mesh-harness check`, host and binaries areas, against real failures: root without
 * CAP_NET_ADMIN, missing accounts, a proxy binary missing or not executable.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { failures, healthyWorld, runCheck } from '../helpers/check-world.ts';
import { SKIP_WITHOUT_SETUP } from '../helpers/host.ts';

t.test('missing capability: the same root without CAP_NET_ADMIN in its bounding set', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'caps');
  const run = await runCheck(world, {}, { wrapper: ['setpriv', '--bounding-set=-net_admin', '--'] });
  t.equal(run.exitCode, 1);
  t.ok(failures(run).includes('host.privileges'), failures(run).join(', '));
  t.match(run.find('host.privileges'), { message: 'root lacks CAP_NET_ADMIN (iptables rules)', hint: /restricted container or under a reduced bounding set/ });
});

t.test('missing proxy user and group', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'account');
  const run = await runCheck(world, { proxy: { user: 'mh-check-nouser', group: 'mh-check-nogroup' } });
  t.same(failures(run).filter((f) => f.startsWith('host.')), ['host.user', 'host.group']);
  t.match(run.find('host.user'), { message: 'user "mh-check-nouser" does not exist on this host; create it (the package does: useradd --system meshproxy) or set proxy.user', hint: 'create user mh-check-nouser or set proxy.user to an existing one' });
  t.match(run.find('host.group').message, 'group "mh-check-nogroup" does not exist');
});

t.test('proxy binary missing, or not executable', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const world = await healthyWorld(t, 'noproxy');
  const run = await runCheck(world, { proxy: { binary: `${world.dir}/no-linkerd2-proxy` } });
  t.same(failures(run), ['binaries.proxy']);
  t.match(run.find('binaries.proxy'), { message: `${world.dir}/no-linkerd2-proxy: not found`, hint: /install linkerd2-proxy .* or set proxy\.binary/ });
  const notExecutable = join(world.dir, 'linkerd2-proxy-noexec');
  writeFileSync(notExecutable, '#!/bin/sh\nexit 64\n', { mode: 0o644 });
  const noexec = await runCheck(world, { proxy: { binary: notExecutable } });
  t.match(noexec.find('binaries.proxy'), { message: `${notExecutable}: exists but is not executable`, hint: `chmod 755 ${notExecutable}` });
});

