import { execa, type ResultPromise } from 'execa';
import { connect, createServer, type Server } from 'node:net';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.ts';
import type { HarnessConfig } from '../../../src/config/types.ts';
import { DevCa } from '../../../src/dev/ca.ts';
import { DevWorkloadApiServer } from '../../../src/dev/workload-api/server.ts';
import { silentLogger } from '../../../src/log/logger.ts';
import { freePort, tempDir, writeJson } from '../../helpers/tmp.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export const SPIFFE_ID = 'spiffe://root.linkerd.cluster.local/vm/web';
export const TRUST_DOMAIN = 'root.linkerd.cluster.local';

/** A Workload API serving SVIDs from a fresh CA, in a directory the proxy user can reach. */
export async function workloadApi(t: Teardown, identities: Array<{ spiffeId: string }> = [], options: { ttlMs?: number; dirMode?: number } = {}) {
  const dir = tempDir(t, 'mh-proxy-');
  chmodSync(dir, options.dirMode ?? 0o755);
  const socketPath = join(dir, 'api.sock');
  const ca = await DevCa.create({ trustDomain: TRUST_DOMAIN });
  const server = new DevWorkloadApiServer({ socketPath, ca, identities, ttlMs: options.ttlMs ?? 3_600_000, log: silentLogger() });
  await server.start();
  t.teardown(() => server.stop());
  return { dir, socketPath, ca, server };
}

/** A harness configuration on free ports whose workload is `workloadPort`. */
export async function proxyConfig(t: Teardown, options: { socketPath: string; workloadPort?: number; extra?: Record<string, Record<string, unknown>> }): Promise<HarnessConfig> {
  const [inboundPort, outboundPort, adminPort, controlPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const file = {
    workload: { namespace: 'shop', nodeName: 'vm-test', ports: options.workloadPort ? [options.workloadPort] : [], ...options.extra?.workload },
    identity: { spiffeId: SPIFFE_ID, serverName: 'web.shop.serviceaccount.identity.linkerd.cluster.local', workloadApiSocket: options.socketPath, ...options.extra?.identity },
    proxy: { destinationAddr: 'linkerd-dst-headless.linkerd.svc.cluster.local.:8086', inboundPort, outboundPort, adminPort, controlPort, shutdownGrace: '5s', ...options.extra?.proxy },
    ...(options.extra?.iptables ? { iptables: options.extra.iptables } : {}),
  };
  return loadConfig({ path: writeJson(tempDir(t), 'config.json', file), env: {} }).config;
}

export interface RunningDevProxy {
  child: ResultPromise;
  lines: string[];
  /** Resolves with the first output line matching. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** Starts the dev proxy directly (no supervisor) with exactly `env`. */
export function runDevProxy(t: Teardown, executable: string, env: Record<string, string>, prefix: string[] = []): RunningDevProxy {
  const [file, ...args] = [...prefix, executable];
  const child = execa(file!, args, { env, extendEnv: false, reject: false, buffer: false, stdin: 'ignore', stderr: 'inherit' });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
    return child;
  });
  const lines: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      lines.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.pattern.test(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  });
  return {
    child,
    lines,
    waitForLine(pattern, timeoutMs = 20_000) {
      const seen = lines.find((l) => pattern.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for a dev proxy line matching ${pattern}; got:\n${lines.join('\n')}`)), timeoutMs);
        waiters.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
  };
}

export { httpGet } from '../../helpers/http.ts';

/** A TCP echo server standing in for the workload. */
export async function echoServer(t: Teardown): Promise<{ port: number; server: Server }> {
  const server = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as { port: number }).port, server };
}

/** Connects, optionally sends `text`, and resolves with everything received until the peer closes. */
export function exchange(port: number, text?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (received += c));
    socket.on('end', () => resolve(received));
    socket.on('error', reject);
    socket.on('connect', () => {
      if (text !== undefined) socket.write(text);
    });
  });
}
