/**
 * The one error hierarchy: the class of an error decides the process exit code
 * (sysexits.h, as the architecture doc fixes them), never its name or message.
 * A leaf module, so every layer (config, iptables, proxy, CLI) can throw the right kind.
 */

export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64,
  /** EX_DATAERR: input that cannot be used (an image whose content does not match its digests). */
  DATA: 65,
  UNAVAILABLE: 69,
  CONFIG: 78,
} as const;

/** An error written for the operator, carrying its exit code. */
export class HarnessError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Wrong command line: exit 64. */
export class UsageError extends HarnessError {
  constructor(message: string) {
    super(message, EXIT.USAGE);
  }
}

/** Something the host lacks (a program, a privilege, a kernel feature): exit 69. */
export class UnavailableError extends HarnessError {
  constructor(message: string) {
    super(message, EXIT.UNAVAILABLE);
  }
}

/** Every problem found in a configuration, one line each: exit 78. */
export class ConfigError extends HarnessError {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'), EXIT.CONFIG);
  }
}

/** The exit code for any thrown value: its class decides, anything unknown is 1. */
export function exitCodeOf(err: unknown): number {
  return err instanceof HarnessError ? err.exitCode : EXIT.FAILURE;
}
