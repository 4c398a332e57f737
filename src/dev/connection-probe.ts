/**
 * One connection from inside a playground namespace, bounded, reported as what was seen:
 * whether the TCP handshake completed, then whether an answer came, the peer closed without
 * one, or nothing came before the bound. The playground explains its traffic steps from
 * this, so the explanation follows what happened whichever proxy runs (a real
 * linkerd2-proxy with no destination service accepts an outbound connection and holds it).
 */

export type ConnectionOutcome =
  /** Connected and an answer came (an HTTP response, or bytes and the end of the stream). */
  | 'answer'
  /** Connected, then the peer closed or reset the connection without an answer. */
  | 'closed'
  /** Connected, and nothing came back before the bound. */
  | 'silent'
  /** The handshake was refused: nothing listens there. */
  | 'refused'
  /** No handshake before the bound. */
  | 'no-connection'
  /** Anything else (unreachable network, ...); `code` says what. */
  | 'error';

export interface ConnectionResult {
  outcome: ConnectionOutcome;
  /** For 'answer': the response body (HTTP) or the bytes received (TCP), as text. */
  text?: string;
  /** For 'answer' over HTTP. */
  status?: number;
  code?: string;
}

export interface ConnectionTarget {
  host: string;
  port: number;
  /** GET this path over HTTP/1.1; without it, a plain TCP connection that sends nothing. */
  path?: string;
  boundMs: number;
}

/**
 * A self-contained Node program (run with `node -e`, argv[1] a JSON ConnectionTarget) that
 * prints one JSON ConnectionResult and exits 0, at the latest when the bound passes.
 */
export const CONNECTION_PROBE = `
const target = JSON.parse(process.argv[1]);
let connected = false;
const report = (result) => { process.stdout.write(JSON.stringify(result)); process.exit(0); };
setTimeout(() => report({ outcome: connected ? 'silent' : 'no-connection' }), target.boundMs);
const failed = (err) => {
  // A reset, even one that lands before the connect event, means something accepted the connection.
  if (['ECONNRESET', 'EPIPE'].includes(err.code)) return report({ outcome: 'closed', code: err.code });
  report({ outcome: err.code === 'ECONNREFUSED' ? 'refused' : 'error', code: err.code || err.message });
};
if (target.path !== undefined) {
  const req = require('node:http').get({ host: target.host, port: target.port, path: target.path, agent: false }, (res) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk) => (text += chunk));
    res.on('end', () => report({ outcome: 'answer', status: res.statusCode, text }));
  });
  req.on('socket', (socket) => socket.on('connect', () => (connected = true)));
  req.on('error', failed);
} else {
  const socket = require('node:net').connect(target.port, target.host);
  let text = '';
  socket.on('connect', () => (connected = true));
  socket.on('data', (chunk) => (text += chunk));
  socket.on('end', () => report(text ? { outcome: 'answer', text } : { outcome: 'closed' }));
  socket.on('error', failed);
}
`;

/** The result as the probe printed it, or an 'error' saying why there is none (it was killed, it printed nothing). */
export function parseConnectionResult(stdout: string, failure: string): ConnectionResult {
  try {
    const parsed = JSON.parse(stdout) as ConnectionResult;
    if (typeof parsed.outcome === 'string') return parsed;
  } catch {
    // not JSON: the probe did not get to report
  }
  return { outcome: 'error', code: failure };
}

/** What happened, in a few words (without the answer itself). */
export function describeConnection(result: ConnectionResult, boundMs: number): string {
  const seconds = `${boundMs / 1000} s`;
  switch (result.outcome) {
    case 'answer':
      return result.status === undefined ? 'answered' : `answered HTTP ${result.status}`;
    case 'closed':
      return 'accepted the connection, then closed it without an answer';
    case 'silent':
      return `accepted the connection and sent nothing back within ${seconds}`;
    case 'refused':
      return 'refused the connection: nothing listens there';
    case 'no-connection':
      return `no connection within ${seconds}`;
    case 'error':
      return `failed: ${result.code ?? 'unknown error'}`;
  }
}
