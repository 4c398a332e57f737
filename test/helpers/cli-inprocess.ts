import { Writable } from 'node:stream';
import { main } from '../../src/cli/main.ts';

/** Output kept per stream: enough to judge a bounded answer, never a flood in memory. */
const KEEP = 1 << 20;

function capture(): { stream: Writable; text: () => string; bytes: () => number } {
  let text = '';
  let bytes = 0;
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      const piece = chunk.toString();
      bytes += piece.length;
      if (text.length < KEEP) text += piece.slice(0, KEEP - text.length);
      done();
    },
  });
  return { stream, text: () => text, bytes: () => bytes };
}

export interface InProcessResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Characters written to stdout and stderr, including what was not kept. */
  outputChars: number;
  ms: number;
}

/** Runs the real CLI entry point (src/cli/main.ts) in this process, with its own argv and environment. */
export async function runInProcess(argv: string[], env: Record<string, string> = {}): Promise<InProcessResult> {
  const stdout = capture();
  const stderr = capture();
  const start = performance.now();
  const exitCode = await main(argv, { stdout: stdout.stream, stderr: stderr.stream, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } });
  return { exitCode, stdout: stdout.text(), stderr: stderr.text(), outputChars: stdout.bytes() + stderr.bytes(), ms: performance.now() - start };
}
