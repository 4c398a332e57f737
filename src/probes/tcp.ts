import { connect } from 'node:net';
import { deadlineSignal, elapsedMs, networkErrorText, timeoutText, type CheckContext, type CheckResult } from './result.ts';
import { hostPort } from './spec.ts';

/** A tcpSocket probe, as kubelet does it: success when the connection opens; it is closed at once. */
export function tcpSocketCheck(target: { host: string; port: number }, context: CheckContext): Promise<CheckResult> {
  const start = performance.now();
  const what = `TCP ${hostPort(target.host, target.port)}`;
  const signal = deadlineSignal(context);
  return new Promise((resolve) => {
    const socket = connect({ host: target.host, port: target.port });
    const finish = (ok: boolean, saw: string) => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve({ ok, latencyMs: elapsedMs(start), message: `${what}: ${saw}` });
    };
    const onAbort = () => finish(false, context.signal.aborted ? 'cancelled' : timeoutText(context.timeoutMs));
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => finish(true, `connected after ${elapsedMs(start)} ms`));
    socket.once('error', (err) => finish(false, `${networkErrorText(err)} after ${elapsedMs(start)} ms`));
  });
}
