/**
 * Node.js 22.1+ keeps compiled code in NODE_COMPILE_CACHE (the packaged launcher sets it
 * under systemd), but writes it only when the process exits. A daemon runs for months and
 * may be killed, so it writes the cache once it has loaded what it runs. A no-op without a
 * cache or on older Node.js (the tests' Node 20).
 */
import module from 'node:module';

export function flushCompileCache(): void {
  try {
    (module as { flushCompileCache?: () => void }).flushCompileCache?.();
  } catch {
    // A cache that cannot be written only costs start-up time.
  }
}
