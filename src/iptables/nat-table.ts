/**
 * Table nat of one address family, through iptables-save and iptables-restore: observe it,
 * and converge its owned part on a desired ruleset in one transaction.
 */
import type { FamilyTools } from './backend.ts';
import { computeDrift, planTransaction, type DriftItem } from './drift.ts';
import { classifyFailure, IptablesCommandError, missingProgram } from './errors.ts';
import { parseSave, type ObservedTable } from './observe.ts';
import { CommandNotFoundError, type CommandRunner } from './runner.ts';
import { TABLE, type Ruleset } from './ruleset.ts';

export interface ConvergeResult {
  /** What differed before; empty when nothing had to change. */
  drift: DriftItem[];
}

/** Attempts when the table changes between our look and our transaction. */
const RACE_ATTEMPTS = 3;

export class NatTable {
  constructor(
    private readonly runner: CommandRunner,
    readonly tools: FamilyTools,
    /** Told the pid of every iptables-restore we start, so events it causes can be told apart. */
    private readonly onRestoreStarted: (pid: number) => void = () => undefined,
  ) {}

  get family() {
    return this.tools.family;
  }

  async observe(): Promise<ObservedTable> {
    const result = await this.exec([this.tools.save, '-t', TABLE]);
    if (result.exitCode !== 0) throw classifyFailure(this.tools.save, result.exitCode, result.stderr);
    return parseSave(result.stdout);
  }

  async drift(desired: Ruleset | undefined): Promise<DriftItem[]> {
    return computeDrift(desired, await this.observe());
  }

  /**
   * Brings the owned chains and jumps to `desired` (undefined: removes them all). A
   * transaction the kernel rejects changes nothing; a transaction that loses a race with
   * another program (a jump it deletes is already gone) is planned again from a new look.
   */
  async converge(desired: Ruleset | undefined): Promise<ConvergeResult> {
    let observed = await this.observe();
    const drift = computeDrift(desired, observed);
    for (let attempt = 1; ; attempt++) {
      const transaction = planTransaction(desired, observed);
      if (transaction === undefined) return { drift };
      const result = await this.exec([this.tools.restore, '--noflush', '-w'], transaction);
      if (result.exitCode === 0) break;
      const failure = classifyFailure(this.tools.restore, result.exitCode, result.stderr);
      const now = await this.observe();
      if (attempt >= RACE_ATTEMPTS || !(failure instanceof IptablesCommandError) || sameTable(now, observed)) throw failure;
      observed = now;
    }
    const left = await this.drift(desired);
    if (left.length) {
      throw new IptablesCommandError(
        `${this.tools.restore} succeeded but ${this.tools.save} still shows drift (the rendered rules do not round-trip on this iptables version): ${left.length} difference(s), first: ${JSON.stringify(left[0])}`,
        '',
      );
    }
    return { drift };
  }

  private async exec(argv: string[], input?: string) {
    try {
      return await this.runner.run(argv, {
        timeoutMs: 30_000,
        ...(input !== undefined ? { input, onSpawn: this.onRestoreStarted } : {}),
      });
    } catch (err) {
      if (err instanceof CommandNotFoundError) throw missingProgram(argv[0]!, `needed for ${this.family}`);
      throw err;
    }
  }
}

function sameTable(a: ObservedTable, b: ObservedTable): boolean {
  return JSON.stringify([a.chains, [...a.rules]]) === JSON.stringify([b.chains, [...b.rules]]);
}
