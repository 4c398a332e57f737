/**
 * When the proxy counts as ready: meshed, not merely up. linkerd2-proxy's admin `/ready`
 * is a one-way latch: it turns 200 once the identity task hands over a certificate, and
 * also when that task dies (a Workload API socket the proxy user cannot open panics it:
 * "spire client must gracefully handle errors ... PermissionDenied", then "identity
 * sender must be held"), and it never turns back. The certificate itself shows on the
 * same admin port as a Prometheus gauge, so ready means `/ready` is 200 *and* that gauge
 * names an expiry in the future.
 */
import { request } from 'node:http';
import type { Readiness } from '../supervisor/supervisor.ts';

/**
 * The proxy's certificate expiry gauge. Proxies with SPIRE support register it as
 * `identity_cert_expiration_timestamp_seconds`; later ones nest the identity metrics
 * under `control_`. Either is accepted.
 */
export const CERT_EXPIRY_METRIC = 'identity_cert_expiration_timestamp_seconds';
const CERT_EXPIRY = /^(?:control_)?identity_cert_expiration_timestamp_seconds(?:\{[^}]*\})?\s+(\S+)/m;

const PROBE_TIMEOUT_MS = 1000;

function get(port: number, path: string): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: PROBE_TIMEOUT_MS }, (res) => {
      if (path === '/ready') {
        res.resume();
        resolve({ status: res.statusCode ?? 0, body: '' });
        return;
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** The certificate expiry (seconds since the epoch) the metrics text reports; undefined when absent. */
export function certExpiry(metricsText: string): number | undefined {
  const match = CERT_EXPIRY.exec(metricsText);
  if (!match) return undefined;
  const value = Number(match[1]);
  return Number.isFinite(value) ? value : undefined;
}

/**
 * Judges the proxy from its admin answers: not ready while `/ready` is not 200; once it
 * is, ready only with a certificate that has not expired, and otherwise broken (a
 * restart is the only way back: the latch never closes again).
 */
export function judgeProxy(ready: boolean, metricsText: string | undefined, now: Date): Readiness {
  if (!ready) return false;
  // The admin server answered /ready a moment ago; a failed /metrics is a glitch, not a verdict.
  if (metricsText === undefined) return false;
  const expiry = certExpiry(metricsText);
  if (expiry === undefined) return { restart: `the proxy answers /ready but reports no identity certificate (no ${CERT_EXPIRY_METRIC} on its /metrics); its identity task has died` };
  if (expiry <= 0) return { restart: 'the proxy answers /ready but holds no identity certificate; its identity task has died (can the proxy user reach the Workload API socket?)' };
  if (expiry * 1000 <= now.getTime()) return { restart: `the proxy's identity certificate expired at ${new Date(expiry * 1000).toISOString()} and was not renewed` };
  return true;
}

/** Probes the proxy's admin server on 127.0.0.1:`port`. */
export async function proxyReadiness(port: number, now: () => Date = () => new Date()): Promise<Readiness> {
  const ready = await get(port, '/ready');
  if (ready?.status !== 200) return false;
  const metrics = await get(port, '/metrics');
  return judgeProxy(true, metrics?.status === 200 ? metrics.body : undefined, now());
}
