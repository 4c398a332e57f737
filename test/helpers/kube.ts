/**
 * A real Kubernetes API server for tests: src/dev/kube-apiserver.ts (etcd and kube-apiserver
 * with a throwaway CA, the real Linkerd ExternalWorkload CRD vendored in deploy/linkerd and
 * deploy/kubernetes applied) on loopback ephemeral ports, plus what only tests need: admin
 * requests, the API server's request counters, etcd compaction.
 *
 * One cluster per test file (startup takes seconds). Processes and the directory are removed
 * in t.teardown, and the processes on process exit as a last resort.
 */
import { type ResultPromise } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeApiServer, missingKubeTools } from '../../src/dev/kube-apiserver.ts';
import { FULL_SETUP, skipUnless } from './host.ts';
import { REPO_ROOT } from './specs.ts';
import { freePort } from './tmp.ts';

export { REGISTRAR_NAMESPACE, REGISTRAR_SERVICE_ACCOUNT, type KubeUser } from '../../src/dev/kube-apiserver.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

const missing = missingKubeTools();

/** Whether kube-apiserver, etcd, kubectl (and openssl) run here. */
export function kubeAvailable(): boolean {
  return missing.length === 0;
}

export const SKIP_WITHOUT_KUBE = skipUnless(missing, FULL_SETUP);

const live = new Set<ResultPromise>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface RequestTotal {
  labels: Record<string, string>;
  value: number;
}

export class KubeCluster extends KubeApiServer {
  static async start(t: Teardown): Promise<KubeCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'mh-kube-'));
    const cluster = new KubeCluster({
      dir,
      root: REPO_ROOT,
      ports: { etcd: await freePort(), etcdPeer: await freePort(), apiserver: await freePort() },
      track: (child) => {
        live.add(child);
        void child.finally(() => live.delete(child));
      },
    });
    t.teardown(async () => {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    await cluster.start();
    await cluster.install();
    return cluster;
  }

  /** One admin request to the API server; the body parsed when it is JSON. */
  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown; text: string }> {
    const admin = this.admin!;
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: this.port, method, path, ca: this.caPem, cert: admin.certPem, key: admin.keyPem, headers: body === undefined ? {} : { 'content-type': 'application/json' }, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON (/readyz, /metrics)
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /** The API server's own apiserver_request_total series (what the zero-writes test counts). */
  async requestTotals(): Promise<RequestTotal[]> {
    const { status, text } = await this.request('GET', '/metrics');
    if (status !== 200) throw new Error(`GET /metrics: ${status}`);
    const out: RequestTotal[] = [];
    for (const line of text.split('\n')) {
      const match = /^apiserver_request_total\{(.*)\} (\S+)$/.exec(line);
      if (!match) continue;
      const labels: Record<string, string> = {};
      for (const [, key, value] of match[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
      out.push({ labels, value: Number(match[2]) });
    }
    return out;
  }

  /** Write requests (POST, PUT, PATCH, DELETE) the API server counted, optionally for one API group/resource. */
  async writeRequests(filter: { group?: string; resource?: string } = {}): Promise<number> {
    const writeVerbs = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'APPLY', 'CREATE', 'UPDATE', 'DELETECOLLECTION']);
    return (await this.requestTotals())
      .filter(({ labels }) => writeVerbs.has(labels.verb ?? '')
        && (filter.group === undefined || labels.group === filter.group)
        && (filter.resource === undefined || labels.resource === filter.resource))
      .reduce((sum, { value }) => sum + value, 0);
  }

  /** Compacts etcd at its current revision (every older resourceVersion becomes 410 Gone); returns it. */
  async compactEtcd(): Promise<number> {
    const etcd = `http://127.0.0.1:${this.etcdPort}/v3/kv`;
    const range = await fetch(`${etcd}/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/').toString('base64'), limit: 1 }) });
    const revision = Number(((await range.json()) as { header?: { revision?: string } }).header?.revision);
    if (!Number.isFinite(revision) || revision <= 0) throw new Error('etcd did not report its revision');
    const compaction = await fetch(`${etcd}/compaction`, { method: 'POST', body: JSON.stringify({ revision: String(revision), physical: true }) });
    if (!compaction.ok) throw new Error(`etcd compaction at ${revision}: ${compaction.status} ${await compaction.text()}`);
    return revision;
  }
}
