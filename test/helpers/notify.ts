import { execa, type ResultPromise } from 'execa';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './tmp.ts';

export interface Notification {
  pid: number;
  uid: number;
  gid: number;
  message: string;
  /** When the receiver got it (ms since epoch). */
  at: number;
}

const script = join(fileURLToPath(new URL('.', import.meta.url)), 'notify_receiver.py');

/** A real NOTIFY_SOCKET receiver that records each datagram with its sender credentials. */
export async function startNotifyReceiver(t: { teardown(fn: () => unknown): void }, socketPath: string) {
  const child: ResultPromise = execa('python3', [script, socketPath], { reject: false, buffer: false });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const received: Notification[] = [];
  let listening = false;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const parsed = JSON.parse(line) as Partial<Notification> & { listening?: string };
    if (parsed.listening) listening = true;
    else received.push({ ...(parsed as Notification), at: Date.now() });
  });
  await waitFor('notify receiver to listen', () => (listening ? true : undefined), 10_000);
  return {
    received,
    /** Waits for a datagram containing the line `KEY=value` (or matching a regexp). */
    waitFor(match: string | RegExp, timeoutMs = 30_000): Promise<Notification> {
      return waitFor(`sd_notify ${String(match)}`, () => received.find((n) => (typeof match === 'string' ? n.message.split('\n').includes(match) : match.test(n.message))), timeoutMs);
    },
  };
}
