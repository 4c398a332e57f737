/** Exit codes from sysexits.h, as the architecture doc fixes them. */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64,
  UNAVAILABLE: 69,
  CONFIG: 78,
} as const;

/** An error that carries the exit code and a message written for the operator. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
