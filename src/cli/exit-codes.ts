import { EXIT, HarnessError } from '../util/errors.ts';

export { EXIT };

/** An error that carries the exit code and a message written for the operator. */
export class CliError extends HarnessError {}
