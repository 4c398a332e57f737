// The mesh-registrar program (dist/mesh-registrar.js, bin/mesh-registrar.mjs).
import { registrarMain } from './cli.ts';

registrarMain(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
  (code) => {
    process.exitCode = code;
    // Open handles (watch connections) must not keep a stopped registrar alive.
    setImmediate(() => process.exit(code));
  },
  (err: unknown) => {
    process.stderr.write(`mesh-registrar: unexpected failure: ${String(err)}\n`);
    process.exit(1);
  },
);
