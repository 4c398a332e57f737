/**
 * Netfilter change events for the nft backend, from `nft monitor`: the kernel announces
 * every ruleset change, so drift is noticed the moment it happens instead of at the next
 * poll. (`xtables-monitor` reports the same events but buffers its output when it is not a
 * terminal, which delays them by kilobytes.)
 *
 * nft closes each transaction with "# new generation N by process PID (name)". Changes made
 * by the harness's own iptables-restore are recognised by that pid and not reported, so
 * the reconciler never chases its own writes.
 */
import type { Logger } from '../log/logger.ts';
import { Backoff } from '../util/backoff.ts';
import type { CommandRunner, LineStream } from './runner.ts';

export interface NftMonitorOptions {
  runner: CommandRunner;
  log: Logger;
  /** Whether a pid is one of the harness's own iptables-restore runs. */
  isOwnPid: (pid: number) => boolean;
  /** Called once per foreign transaction that touched table nat of IPv4 or IPv6. */
  onChange: (what: string) => void;
}

const EVENT = /^(add|delete|insert|replace|create|flush|update|destroy|reset)\s+(\S+)\s+(\S+)\s+(\S+)/;
const GENERATION = /^# new generation \d+ by process (\d+)/;
/** An nft too old to print generation lines must not hold events back for long. */
const UNTERMINATED_BATCH_MS = 100;

/** Whether one `nft monitor` line can concern table nat of ip or ip6. Unknown shapes count. */
export function concernsNat(line: string): boolean {
  const event = EVENT.exec(line);
  if (!event) return true;
  const [, , object, family, table] = event;
  if (object === 'ruleset') return true;
  return (family === 'ip' || family === 'ip6') && table === 'nat';
}

export class NftMonitor {
  private stream: LineStream | undefined;
  private pending: string[] = [];
  private pendingTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = true;
  private readonly backoff = new Backoff({ baseMs: 500, maxMs: 30_000 });

  constructor(private readonly options: NftMonitorOptions) {}

  /** Whether events are flowing; while false the reconciler must poll. */
  get running(): boolean {
    return this.stream !== undefined;
  }

  /** Starts watching (once: a second call while watching starts no second monitor); false when there is no nft program. */
  start(): boolean {
    if (!this.stopped) return true;
    const nft = this.options.runner.which('nft');
    if (!nft) return false;
    this.stopped = false;
    this.spawn(nft);
    return true;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.pendingTimer);
    clearTimeout(this.restartTimer);
    this.stream?.stop();
    this.stream = undefined;
    this.pending = [];
  }

  private spawn(nft: string): void {
    const started = Date.now();
    const stream = this.options.runner.stream([nft, 'monitor'], (line) => this.onLine(line));
    this.stream = stream;
    void stream.exited.then((code) => {
      if (this.stopped || this.stream !== stream) return;
      this.stream = undefined;
      if (Date.now() - started > 60_000) this.backoff.reset();
      const delay = this.backoff.next();
      this.options.log.warn({ exit: code, retryInMs: delay }, 'nft monitor ended; polling until it is back');
      // The rules may have changed while nobody was listening.
      this.options.onChange('nft monitor restarted');
      this.restartTimer = setTimeout(() => this.spawn(nft), delay);
    });
  }

  private onLine(line: string): void {
    const generation = GENERATION.exec(line);
    if (generation) {
      const pid = Number(generation[1]);
      if (this.pending.length && !this.options.isOwnPid(pid)) this.flush(`${this.pending[0]} (pid ${pid})`);
      this.clearPending();
      return;
    }
    if (line.startsWith('#') || line.trim() === '' || !concernsNat(line)) return;
    this.pending.push(line.trim());
    this.pendingTimer ??= setTimeout(() => {
      this.pendingTimer = undefined;
      if (this.pending.length) this.flush(this.pending[0]!);
      this.pending = [];
    }, UNTERMINATED_BATCH_MS);
  }

  private flush(what: string): void {
    this.options.onChange(what);
  }

  private clearPending(): void {
    this.pending = [];
    clearTimeout(this.pendingTimer);
    this.pendingTimer = undefined;
  }
}
