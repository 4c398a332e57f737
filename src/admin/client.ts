import { request } from 'node:http';
import type { HarnessConfig } from '../config/types.ts';
import type { AdminStatus } from './server.ts';

/** Where a client on this host reaches the admin API: a wildcard listen address is reached over loopback. */
export function adminClientHost(admin: Pick<HarnessConfig['admin'], 'address'>): string {
  if (admin.address === '0.0.0.0') return '127.0.0.1';
  if (admin.address === '::') return '::1';
  return admin.address;
}

/** Reads the running daemon's /status; rejects when nothing answers in time or the answer is not status JSON. */
export function fetchAdminStatus(host: string, port: number, timeoutMs: number): Promise<AdminStatus> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/status', method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        try {
          const status = JSON.parse(body) as AdminStatus;
          if (!Array.isArray(status.components)) throw new Error('no components');
          resolve(status);
        } catch {
          reject(new Error(`the admin API at ${host}:${port} answered something that is not mesh-harness status JSON`));
        }
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer from ${host}:${port} within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end();
  });
}
