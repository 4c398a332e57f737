/**
 * The probe runner: a long-lived child of the harness that performs httpGet, tcpSocket and
 * grpc checks on request, as the unprivileged probes.execUser account. Its sockets belong
 * to that account, not to the harness (root, group meshproxy), which the iptables owner
 * match exempts from redirection: so a probe goes through the mesh as any other local
 * client would. The harness keeps the schedule and the thresholds; this process only
 * answers "what did one check see".
 *
 * Requests on stdin, replies on stdout (protocol.ts); its own complaints on stderr, as
 * JSON lines the harness logs. It exits once the harness closed stdin and every check
 * asked was answered, and dies with the harness (the supervisor's parent-death signal).
 */
import { LineSplitter } from '../../supervisor/lines.ts';
import { runNetworkCheck } from '../network.ts';
import type { RunnerReply, RunnerRequest } from './protocol.ts';

const inFlight = new Map<number, AbortController>();
let closing = false;

function send(reply: RunnerReply): void {
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}

function complain(message: string): void {
  process.stderr.write(`${JSON.stringify({ level: 'warn', msg: message })}\n`);
}

function handle(request: RunnerRequest): void {
  if ('cancel' in request) {
    inFlight.get(request.cancel)?.abort();
    return;
  }
  const { id, check, timeoutMs } = request;
  const abort = new AbortController();
  inFlight.set(id, abort);
  runNetworkCheck(check, { timeoutMs, signal: abort.signal })
    .catch((err: Error) => ({ ok: false, latencyMs: 0, message: err.message }))
    .then((result) => {
      inFlight.delete(id);
      send({ id, ok: result.ok, latencyMs: result.latencyMs, message: result.message });
      if (closing && inFlight.size === 0) process.exit(0);
    });
}

const lines = new LineSplitter((line) => {
  if (line.truncated) return complain('request line too long, ignored');
  let request: RunnerRequest;
  try {
    request = JSON.parse(line.text) as RunnerRequest;
  } catch {
    return complain('request is not JSON, ignored');
  }
  handle(request);
});

// The harness is gone or done with us: nothing is left to answer to.
process.stdout.on('error', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.stdin.on('data', (chunk: Buffer) => lines.push(chunk));
// Stdin closed: the harness sends no more; answer what was asked, then go.
process.stdin.on('end', () => {
  closing = true;
  if (inFlight.size === 0) process.exit(0);
});
send({ ready: true, uid: process.getuid!(), gid: process.getgid!(), groups: process.getgroups!() });
