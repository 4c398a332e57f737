import { StringDecoder } from 'node:string_decoder';

/** Longest line kept from a child; the rest of an overlong line is dropped, not buffered. */
export const MAX_LINE_CHARS = 16 * 1024;

export interface Line {
  text: string;
  /** The child wrote more than the limit before the newline; `text` holds the start only. */
  truncated: boolean;
}

/**
 * Splits a child's output stream into lines with a hard cap on what is held in memory,
 * so a child that writes megabytes without a newline cannot grow the harness.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private discarding = false;

  constructor(
    private readonly onLine: (line: Line) => void,
    private readonly maxChars = MAX_LINE_CHARS,
  ) {}

  push(chunk: Buffer | string): void {
    this.consume(typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
  }

  /** Emits what is left once the stream ended (a last line without a newline). */
  end(): void {
    this.consume(this.decoder.end());
    if (this.pending && !this.discarding) this.emit(this.pending, false);
    this.pending = '';
    this.discarding = false;
  }

  private consume(text: string): void {
    let start = 0;
    for (;;) {
      const newline = text.indexOf('\n', start);
      if (newline < 0) break;
      if (this.discarding) this.discarding = false;
      else {
        const line = this.pending + text.slice(start, newline);
        if (line.length > this.maxChars) this.emit(line.slice(0, this.maxChars), true);
        else this.emit(line, false);
      }
      this.pending = '';
      start = newline + 1;
    }
    if (this.discarding) return;
    this.pending += text.slice(start);
    if (this.pending.length > this.maxChars) {
      this.emit(this.pending.slice(0, this.maxChars), true);
      this.pending = '';
      this.discarding = true;
    }
  }

  private emit(text: string, truncated: boolean): void {
    this.onLine({ text: text.endsWith('\r') ? text.slice(0, -1) : text, truncated });
  }
}
