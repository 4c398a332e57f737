import { EXIT, HarnessError } from '../util/errors.ts';

/**
 * Why an image could not be used. `unavailable` (the registry cannot be reached) exits 69;
 * everything else (content that does not match its digest, no build for this machine, a
 * refused credential, an image without the file) exits 1: retrying will not help.
 */
export type OciErrorKind = 'tampered' | 'unavailable' | 'not-found' | 'platform' | 'unsupported' | 'auth' | 'invalid';

export class OciError extends HarnessError {
  constructor(
    message: string,
    readonly kind: OciErrorKind = 'invalid',
  ) {
    super(message, kind === 'unavailable' ? EXIT.UNAVAILABLE : EXIT.FAILURE);
  }
}
