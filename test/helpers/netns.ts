/**
 * Network namespaces for tests that need real netfilter and real traffic. Every namespace
 * is named mh-<label>-<random>, and is removed, with every process still running in it,
 * when the test ends, whether it passed or not.
 */
import { execa, type ResultPromise } from 'execa';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { execRunner, type CommandRunner } from '../../src/iptables/runner.ts';
import { minimalEnv, removeNetns } from '../../src/util/netns.ts';
import { asAccount } from '../../src/util/run-as.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface Netns {
  name: string;
  /** Prefix that runs a command inside the namespace. */
  prefix: string[];
  /** A CommandRunner acting on this namespace, for the iptables code under test. */
  runner: CommandRunner;
  /** Runs a command inside the namespace; rejects on a non-zero exit with its stderr. */
  exec(argv: string[], input?: string): Promise<string>;
}

/** Environment for programs started in a namespace: none of the test runner's loader hooks. */
export const childEnv = minimalEnv;

async function ip(args: string[]): Promise<void> {
  await execa('ip', args, { env: childEnv(), extendEnv: false });
}

/** Namespaces this test process made and has not removed yet. */
const live = new Set<string>();

/**
 * The last line of defence when teardowns never run: the test process ends on a signal
 * (tap's timeout sends SIGTERM) or exits abruptly. Synchronous, as an 'exit' handler
 * must be; the normal path is the asynchronous teardown.
 */
function removeLiveSync(): void {
  for (const name of live) {
    const pids = spawnSync('ip', ['netns', 'pids', name], { env: childEnv(), encoding: 'utf8' }).stdout ?? '';
    for (const pid of pids.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    spawnSync('ip', ['netns', 'del', name], { env: childEnv() });
  }
  live.clear();
}

let guarded = false;
function guardProcessExit(): void {
  if (guarded) return;
  guarded = true;
  process.on('exit', removeLiveSync);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(signal, () => {
      removeLiveSync();
      // Then die of the signal as the test process would have.
      process.kill(process.pid, signal);
    });
  }
}

export async function createNetns(t: Teardown, label: string): Promise<Netns> {
  const name = `mh-${label}-${randomBytes(3).toString('hex')}`;
  guardProcessExit();
  live.add(name);
  await ip(['netns', 'add', name]);
  t.teardown(async () => {
    await destroyNetns(name);
    live.delete(name);
  });
  await ip(['-n', name, 'link', 'set', 'lo', 'up']);
  const prefix = ['ip', 'netns', 'exec', name];
  return {
    name,
    prefix,
    runner: execRunner({ prefix, env: childEnv() }),
    async exec(argv, input) {
      const result = await execa(prefix[0]!, [...prefix.slice(1), ...argv], { env: childEnv(), extendEnv: false, reject: false, ...(input !== undefined ? { input } : {}) });
      if (result.exitCode !== 0) throw new Error(`${argv.join(' ')} in ${name} exited ${result.exitCode}: ${result.stderr}`);
      return result.stdout;
    },
  };
}

/** Kills what still runs in the namespace, then removes it. */
export const destroyNetns = removeNetns;

export interface LinkAddresses {
  /** CIDR addresses for the first namespace's end, such as ['198.18.0.1/24', '2001:db8::1/64']. */
  a: string[];
  b: string[];
}

/** Joins two namespaces with a veth pair and addresses its ends (IPv6 without duplicate address detection). */
export async function linkNetns(a: Netns, b: Netns, addresses: LinkAddresses): Promise<void> {
  const tag = randomBytes(3).toString('hex');
  const [endA, endB] = [`mh${tag}a`, `mh${tag}b`];
  await ip(['link', 'add', endA, 'netns', a.name, 'type', 'veth', 'peer', 'name', endB, 'netns', b.name]);
  for (const [ns, end, list] of [[a, endA, addresses.a], [b, endB, addresses.b]] as const) {
    for (const address of list) await ip(['-n', ns.name, 'addr', 'add', address, 'dev', end, ...(address.includes(':') ? ['nodad'] : [])]);
    await ip(['-n', ns.name, 'link', 'set', end, 'up']);
  }
}

const LISTENER = `
const net = require('node:net');
const specs = JSON.parse(process.argv[1]);
let waiting = specs.length;
for (const spec of specs) {
  net.createServer((socket) => socket.end(spec.reply + '\\n'))
    .listen({ port: spec.port, host: spec.host, ipv6Only: false }, () => { if (--waiting === 0) console.log('ready'); });
}
`;

export interface ListenerSpec {
  port: number;
  /** Answer sent to every connection, so the client can tell where it arrived. */
  reply: string;
  /** '::' (the default) also accepts IPv4. */
  host?: string;
}

/**
 * Runs a Node script inside the namespace (optionally behind a command such as
 * `asAccount(...)`, to run it as another account) until teardown; resolves once the script
 * prints "ready".
 */
export async function startScriptIn(t: Teardown, ns: Netns, what: string, script: string, args: string[] = [], wrapper: string[] = []): Promise<void> {
  const child: ResultPromise = execa(ns.prefix[0]!, [...ns.prefix.slice(1), ...wrapper, process.execPath, '-e', script, ...args], {
    env: childEnv(),
    extendEnv: false,
    reject: false,
    buffer: false,
  });
  t.teardown(() => {
    child.kill('SIGKILL');
    return child;
  });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => line === 'ready' && resolve());
    void child.then((r) => reject(new Error(`${what} in ${ns.name} exited early: ${String(r.stderr ?? '')}`)));
  });
}

/** TCP listeners inside the namespace, each answering with its own reply; stopped at teardown. */
export function startListeners(t: Teardown, ns: Netns, specs: ListenerSpec[]): Promise<void> {
  return startScriptIn(t, ns, 'listeners', LISTENER, [JSON.stringify(specs.map((s) => ({ host: '::', ...s })))]);
}

const CLIENT = `
const net = require('node:net');
const targets = JSON.parse(process.argv[1]);
Promise.all(targets.map((t) => new Promise((resolve) => {
  const socket = net.connect({ host: t.host, port: t.port, localAddress: t.localAddress, timeout: 5000 });
  let data = '';
  socket.on('data', (chunk) => (data += chunk));
  socket.on('end', () => resolve(data.trim()));
  socket.on('error', (err) => resolve('error: ' + err.code));
  socket.on('timeout', () => { socket.destroy(); resolve('timeout'); });
}))).then((replies) => console.log(JSON.stringify(replies)));
`;

export interface ConnectTarget {
  host: string;
  port: number;
  localAddress?: string;
}

/**
 * Connects from inside the namespace, as the given uid and gid (no supplementary groups),
 * to each target; returns the reply of each, or "error: CODE".
 */
export async function connectFrom(ns: Netns, as: { uid: number; gid: number }, targets: ConnectTarget[]): Promise<string[]> {
  const argv = [...asAccount(as), process.execPath, '-e', CLIENT, JSON.stringify(targets)];
  return JSON.parse(await ns.exec(argv)) as string[];
}
