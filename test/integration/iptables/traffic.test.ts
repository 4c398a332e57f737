// Real connections through the rules the IptablesComponent installs, in a pair of
// namespaces joined by a veth: "vm" (where the harness runs) and "peer" (the network).
import t from 'tap';
import { Registry } from 'prom-client';
import { loadConfig } from '../../../src/config/load.ts';
import { IptablesComponent } from '../../../src/iptables/component.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { connectFrom, createNetns, linkNetns, startListeners, type ConnectTarget } from '../../helpers/netns.ts';
import { SKIP_WITHOUT_SETUP } from '../../helpers/host.ts';

// Test-only addresses: 198.18.0.0/15 (benchmarking) and 2001:db8::/32 (documentation),
// inside namespaces this test creates.
const VM = { v4: '198.18.0.1', v6: '2001:db8::1' };
const PEER = { v4: '198.18.0.2', v6: '2001:db8::2' };
/** A second peer address: an ignored subnet in both directions. */
const PEER_IGNORED = { v4: '198.18.0.3', v6: '2001:db8::3' };

const NOBODY = 65534; // proxy.user nobody
const NOGROUP = 65534; // proxy.group nogroup
const DAEMON = 1; // an ordinary workload account
const BIN_GROUP = 2;

t.test('redirection of real IPv4 and IPv6 traffic', { skip: SKIP_WITHOUT_SETUP }, async (t) => {
  const vm = await createNetns(t, 'vm');
  const peer = await createNetns(t, 'peer');
  await linkNetns(vm, peer, { a: [`${VM.v4}/24`, `${VM.v6}/64`], b: [`${PEER.v4}/24`, `${PEER_IGNORED.v4}/24`, `${PEER.v6}/64`, `${PEER_IGNORED.v6}/64`] });
  await startListeners(t, vm, [
    { port: 4143, reply: 'proxy-inbound' },
    { port: 4140, reply: 'proxy-outbound' },
    { port: 8080, reply: 'vm-8080' },
    { port: 22, reply: 'vm-22' },
  ]);
  await startListeners(t, peer, [
    { port: 80, reply: 'peer-80' },
    { port: 443, reply: 'peer-443' },
  ]);

  const { config } = loadConfig({
    path: null,
    env: {},
    sets: [
      'proxy.user=nobody',
      'proxy.group=nogroup',
      'iptables.ignoreOutboundPorts=443',
      // Replaces nothing: SSH stays exempt whatever the list says.
      'iptables.ignoreInboundPorts=8443',
      `iptables.ignoreInboundSubnets=${PEER_IGNORED.v4}/32,${PEER_IGNORED.v6}/128`,
      `iptables.ignoreOutboundSubnets=${PEER_IGNORED.v4},${PEER_IGNORED.v6}`,
      'iptables.onStop=clean',
    ],
  });
  const component = new IptablesComponent({ config, log: silentLogger(), registry: new Registry(), runner: vm.runner });
  t.teardown(() => component.stop());
  await component.start();
  t.equal(component.state().phase, 'Pending');
  t.same(component.state().detail?.families, ['ipv4', 'ipv6'], 'IPv6 detected in the namespace');

  // Before the proxy has answered ready: chains prepared, nothing enters them.
  t.notMatch(await vm.exec(['iptables-save', '-t', 'nat']), /-j MESH_HARNESS_/, 'no jump before the proxy is ready');
  for (const family of ['v4', 'v6'] as const) {
    const [inbound] = await connectFrom(peer, { uid: 0, gid: 0 }, [{ host: VM[family], port: 8080, localAddress: PEER[family] }]);
    t.equal(inbound, 'vm-8080', `${family}: inbound reaches the workload directly while the proxy is not ready`);
    const [outbound] = await connectFrom(vm, { uid: DAEMON, gid: DAEMON }, [{ host: PEER[family], port: 80 }]);
    t.equal(outbound, 'peer-80', `${family}: outbound reaches the peer directly while the proxy is not ready`);
  }

  await component.enableRedirect();
  t.equal(component.state().phase, 'Ready');

  for (const family of ['v4', 'v6'] as const) {
    const inbound: Array<[ConnectTarget, string, string]> = [
      [{ host: VM[family], port: 8080, localAddress: PEER[family] }, 'proxy-inbound', 'a workload port is redirected to the proxy inbound port'],
      [{ host: VM[family], port: 22, localAddress: PEER[family] }, 'vm-22', 'SSH is always exempt, though ignoreInboundPorts does not list it'],
      [{ host: VM[family], port: 8443, localAddress: PEER[family] }, 'error: ECONNREFUSED', 'an ignored inbound port is not redirected (nothing listens on it)'],
      [{ host: VM[family], port: 8080, localAddress: PEER_IGNORED[family] }, 'vm-8080', 'an ignored source subnet is not redirected'],
    ];
    const replies = await connectFrom(peer, { uid: 0, gid: 0 }, inbound.map(([target]) => target));
    inbound.forEach(([, expected, what], i) => t.equal(replies[i], expected, `${family} inbound: ${what}`));

    const workload: Array<[ConnectTarget, string, string]> = [
      [{ host: PEER[family], port: 80 }, 'proxy-outbound', 'a workload connection is redirected to the proxy outbound port'],
      [{ host: PEER[family], port: 443 }, 'peer-443', 'an ignored outbound port is not redirected'],
      [{ host: PEER_IGNORED[family], port: 80 }, 'peer-80', 'an ignored destination subnet is not redirected'],
      [{ host: family === 'v4' ? '127.0.0.1' : '::1', port: 8080 }, 'vm-8080', 'loopback is not redirected'],
      [{ host: VM[family], port: 8080 }, 'vm-8080', "the machine's own address (over lo) is not redirected"],
    ];
    const fromWorkload = await connectFrom(vm, { uid: DAEMON, gid: DAEMON }, workload.map(([target]) => target));
    workload.forEach(([, expected, what], i) => t.equal(fromWorkload[i], expected, `${family} outbound: ${what}`));

    const [fromProxyUser] = await connectFrom(vm, { uid: NOBODY, gid: BIN_GROUP }, [{ host: PEER[family], port: 80 }]);
    t.equal(fromProxyUser, 'peer-80', `${family} outbound: the proxy user is not redirected`);
    const [fromHarnessGroup] = await connectFrom(vm, { uid: DAEMON, gid: NOGROUP }, [{ host: PEER[family], port: 80 }]);
    t.equal(fromHarnessGroup, 'peer-80', `${family} outbound: the harness group is not redirected`);
  }

  await component.stop();
  const [afterClean] = await connectFrom(peer, { uid: 0, gid: 0 }, [{ host: VM.v4, port: 8080 }]);
  t.equal(afterClean, 'vm-8080', 'with onStop=clean, traffic flows directly after stop');
});
