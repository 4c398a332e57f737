import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { deadlineSignal, elapsedMs, networkErrorText, timeoutText, type CheckContext, type CheckResult } from './result.ts';
import { hostPort } from './spec.ts';

export interface HttpTarget {
  scheme: 'HTTP' | 'HTTPS';
  host: string;
  port: number;
  path: string;
  headers: Array<{ name: string; value: string }>;
}

/** What kubelet reads of a probe response body; the rest is discarded. */
const BODY_LIMIT = 10 * 1024;
/** Go's http.Client default, which kubelet keeps. */
const MAX_REDIRECTS = 10;

export function targetUrl(target: HttpTarget): URL {
  return new URL(`${target.scheme.toLowerCase()}://${hostPort(target.host, target.port)}${target.path}`);
}

interface Response {
  status: number;
  location: string | undefined;
}

/** One GET, body read up to BODY_LIMIT (as kubelet does: a body that never ends is a timeout). */
function get(url: URL, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
  return new Promise((resolve, reject) => {
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = request(url, {
      method: 'GET',
      headers,
      // A fresh connection per check, like kubelet: a probe must see the listener as a new client would.
      agent: false,
      signal,
      // kubelet does not verify the workload's certificate: the probe asks "does it answer", not "who is it".
      rejectUnauthorized: false,
    }, (res: IncomingMessage) => {
      let read = 0;
      const done = () => {
        res.destroy();
        resolve({ status: res.statusCode ?? 0, location: res.headers.location });
      };
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read >= BODY_LIMIT) done();
      });
      res.on('end', done);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * An httpGet probe with kubelet's semantics: 200-399 is success; redirects are followed
 * (up to 10) only while they stay on the same host name, and a redirect to another host
 * is not followed and counts as success (the 3xx itself is the answer); HTTPS without
 * certificate verification; the timeout covers the whole exchange including redirects.
 */
export async function httpGetCheck(target: HttpTarget, context: CheckContext): Promise<CheckResult> {
  const start = performance.now();
  const signal = deadlineSignal(context);
  const first = targetUrl(target);
  const what = `GET ${first.href}`;
  const headers: Record<string, string> = { 'user-agent': 'mesh-harness-probe', accept: '*/*' };
  for (const { name, value } of target.headers) headers[name.toLowerCase()] = value;
  let url = first;
  try {
    for (let redirects = 0; ; redirects++) {
      const { status, location } = await get(url, headers, signal);
      const via = url === first ? '' : ` (via ${url.href})`;
      if (status >= 300 && status < 400 && location) {
        const next = new URL(location, url);
        if (next.hostname !== first.hostname) {
          return { ok: true, latencyMs: elapsedMs(start), message: `${what}: ${status} redirect to another host (${next.host}), not followed, after ${elapsedMs(start)} ms` };
        }
        if (redirects + 1 >= MAX_REDIRECTS) {
          return { ok: false, latencyMs: elapsedMs(start), message: `${what}: stopped after ${MAX_REDIRECTS} redirects after ${elapsedMs(start)} ms` };
        }
        url = next;
        continue;
      }
      const latencyMs = elapsedMs(start);
      return { ok: status >= 200 && status < 400, latencyMs, message: `${what}: ${status}${via} after ${latencyMs} ms` };
    }
  } catch (err) {
    const latencyMs = elapsedMs(start);
    if (signal.aborted && !context.signal.aborted) return { ok: false, latencyMs, message: `${what}: ${timeoutText(context.timeoutMs)}` };
    return { ok: false, latencyMs, message: `${what}: ${networkErrorText(err)} after ${latencyMs} ms` };
  }
}
