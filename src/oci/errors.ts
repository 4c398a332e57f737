import { EXIT, HarnessError } from '../util/errors.ts';

/**
 * Why an image could not be used, and so the exit code: `unavailable` (the registry or
 * its token service cannot be reached, or answers 429/5xx: try again later) exits 69; content
 * that cannot be used (it does not match its digest, has no build for this machine, is
 * malformed or of an unsupported kind) exits 65; a refused credential, an image that
 * does not exist, a registry answering what the API does not allow, or a destination that
 * cannot be written (`failed`) exits 1.
 */
export type OciErrorKind = 'tampered' | 'unavailable' | 'not-found' | 'platform' | 'unsupported' | 'auth' | 'invalid' | 'failed';

const EXIT_CODE: Record<OciErrorKind, number> = {
  unavailable: EXIT.UNAVAILABLE,
  tampered: EXIT.DATA,
  platform: EXIT.DATA,
  unsupported: EXIT.DATA,
  invalid: EXIT.DATA,
  auth: EXIT.FAILURE,
  'not-found': EXIT.FAILURE,
  failed: EXIT.FAILURE,
};

export class OciError extends HarnessError {
  constructor(
    message: string,
    readonly kind: OciErrorKind = 'invalid',
  ) {
    super(message, EXIT_CODE[kind]);
  }
}
