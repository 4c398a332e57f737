/**
 * mesh-dev-proxy: the development stand-in for linkerd2-proxy (dist/dev-proxy.js). Reads
 * the LINKERD2_PROXY_* environment; exits 64 naming every missing or invalid variable,
 * like the real proxy. Never the production path.
 */
import { logSettings, parseDevProxyEnv } from './config.ts';
import { devProxyLogger } from './log.ts';
import { DevProxy } from './proxy.ts';

const EX_USAGE = 64;

const log = devProxyLogger(logSettings(process.env).settings);
const parsed = parseDevProxyEnv(process.env);
if (!parsed.ok) {
  for (const problem of parsed.problems) log.error(problem);
  log.error('Invalid configuration: the environment above is missing or malformed');
  process.exit(EX_USAGE);
}

const proxy = new DevProxy(parsed.config, log);
// Installed before the listeners open: a SIGTERM that arrives while the proxy starts
// (the harness stopping it at once) drains it once started instead of killing it outright.
const started = proxy.start();
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    started
      .catch(() => undefined)
      .then(() => proxy.drain())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err: String(err) }, 'shutdown failed');
          process.exit(1);
        },
      );
  });
}
try {
  await started;
} catch (err) {
  log.error({ err: String(err) }, `cannot start: ${(err as Error).message}`);
  process.exit(1);
}
