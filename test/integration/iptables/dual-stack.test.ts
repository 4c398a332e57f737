// Issue 13 item 1: the rules and the proxy environment read one IPv6 decision. The
// listeners here bind exactly the addresses the rendered proxy environment gives (not a
// convenient `::`), so IPv6 traffic the rules redirect must arrive where the proxy listens.
import t from 'tap';
import { Registry } from 'prom-client';
import { loadConfig } from '../../../src/config/load.ts';
import { IptablesComponent } from '../../../src/iptables/component.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { PROXY_ENV, renderProxyEnv } from '../../../src/proxy/env.ts';
import { connectFrom, createNetns, linkNetns, startListeners, type ListenerSpec } from '../../helpers/netns.ts';
import { SKIP_WITHOUT_SETUP } from '../../helpers/host.ts';

const VM = { v4: '198.18.9.1', v6: '2001:db8:9::1' };
const PEER = { v4: '198.18.9.2', v6: '2001:db8:9::2' };
const WORKLOAD_USER = { uid: 1, gid: 1 }; // daemon: an ordinary account

/** "[::]:4143" or "127.0.0.1:4140" to a listener on exactly that address. */
function listenerAt(address: string, reply: string): ListenerSpec {
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(address)!;
  return { host: m[1]!, port: Number(m[2]), reply };
}

t.test('dual stack: IPv6 outbound from a workload user reaches the proxy where the rendered environment says it listens', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const { config } = loadConfig({ path: null, env: {}, sets: ['proxy.user=nobody', 'proxy.group=nogroup', 'iptables.onStop=clean'] });
  t.equal(config.iptables.ipv6, 'auto', 'the default setting');
  t.equal(config.host.ipv6, true, 'this host has IPv6, so the one decision is "IPv6 too"');

  const env = renderProxyEnv(config, { workloadName: 'web-1', trustAnchorsPem: 'unused here' });
  const outbound = env[PROXY_ENV.outboundListenAddrs]!.split(',');
  t.same(outbound, ['127.0.0.1:4140', '[::1]:4140'], 'the proxy is told to listen on both loopbacks');
  t.equal(env[PROXY_ENV.inboundListenAddr], '[::]:4143');

  const vm = await createNetns(t, 'config-ds-vm');
  const peer = await createNetns(t, 'config-ds-peer');
  await linkNetns(vm, peer, { a: [`${VM.v4}/24`, `${VM.v6}/64`], b: [`${PEER.v4}/24`, `${PEER.v6}/64`] });
  await startListeners(t, vm, [...outbound.map((a) => listenerAt(a, 'proxy-outbound')), listenerAt(env[PROXY_ENV.inboundListenAddr]!, 'proxy-inbound')]);
  await startListeners(t, peer, [{ port: 80, reply: 'peer-80' }]);

  const component = new IptablesComponent({ config, log: silentLogger(), registry: new Registry(), runner: vm.runner });
  t.teardown(() => component.stop());
  await component.start();
  t.same(component.state().detail?.families, ['ipv4', 'ipv6'], 'ip6tables is managed by the same decision');
  // The jumps go in once the proxy has answered ready; the daemon's wiring calls this then.
  await component.enableRedirect();

  const replies = await connectFrom(vm, WORKLOAD_USER, [{ host: PEER.v4, port: 80 }, { host: PEER.v6, port: 80 }]);
  t.same(replies, ['proxy-outbound', 'proxy-outbound'], 'IPv4 and IPv6 outbound both reach the proxy (IPv6 was ECONNREFUSED before)');
  const inbound = await connectFrom(peer, { uid: 0, gid: 0 }, [{ host: VM.v4, port: 8080 }, { host: VM.v6, port: 8080 }]);
  t.same(inbound, ['proxy-inbound', 'proxy-inbound'], 'inbound on both families reaches the proxy inbound listener');
});

t.test('without usable IPv6 neither ip6tables nor the proxy use it', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const { config } = loadConfig({ path: null, env: {}, sets: ['proxy.user=nobody', 'proxy.group=nogroup'], host: { ipv6Loopback: false } });
  t.equal(config.host.ipv6, false);
  const env = renderProxyEnv(config, { workloadName: 'w', trustAnchorsPem: 'x' });
  t.equal(env[PROXY_ENV.outboundListenAddrs], '127.0.0.1:4140');
  t.equal(env[PROXY_ENV.inboundListenAddr], '0.0.0.0:4143');
  t.throws(() => loadConfig({ path: null, env: {}, sets: ['iptables.ipv6=on'], host: { ipv6Loopback: false } }), { name: 'ConfigError', message: /iptables\.ipv6: got "on"; this host has no usable IPv6/ });
  const off = loadConfig({ path: null, env: {}, sets: ['iptables.ipv6=off'], host: { ipv6Loopback: true } }).config;
  t.equal(off.host.ipv6, false, '"off" wins over the host');
  t.equal(renderProxyEnv(off, { workloadName: 'w', trustAnchorsPem: 'x' })[PROXY_ENV.outboundListenAddrs], '127.0.0.1:4140');
});
