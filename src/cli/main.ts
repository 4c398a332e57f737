import { ConfigError, EXIT, exitCodeOf, HarnessError } from '../util/errors.ts';
import { PRIORITY } from '../log/journal.ts';
import { report, write, type Command, type CommandIo } from './command.ts';

/**
 * Commands are loaded on demand (the bundle is split per command), so `version` or
 * `status` do not pay for gRPC, prom-client and the rest of the daemon at start-up.
 */
interface CommandEntry {
  name: string;
  summary: string;
  load: () => Promise<Command>;
}

/** True in the .deb/.rpm build (scripts/lib/bundle.mjs); undefined from source and in dist/. */
declare const MESH_HARNESS_PACKAGED: boolean | undefined;

const commands: CommandEntry[] = [
  { name: 'run', summary: 'run the node agent (systemd ExecStart)', load: async () => (await import('./commands/run.ts')).runCommand },
  { name: 'status', summary: "show the running daemon's state", load: async () => (await import('./commands/status.ts')).statusCommand },
  { name: 'check', summary: 'preflight and live diagnosis: one line per check, a hint on each failure', load: async () => (await import('./commands/check.ts')).checkCommand },
  { name: 'config', summary: 'validate a configuration file, or show the effective configuration', load: async () => (await import('./commands/config.ts')).configCommand },
  { name: 'iptables', summary: 'print, apply, diff or remove the traffic redirection rules', load: async () => (await import('./commands/iptables.ts')).iptablesCommand },
  { name: 'proxy', summary: 'print the exact environment the harness gives the proxy (sourceable by a shell)', load: async () => (await import('./commands/proxy.ts')).proxyCommand },
  // The packaged bundle leaves out the playground (its development stand-ins and the registrar
  // it runs are not shipped), so `demo` is neither listed nor loadable there. Tested inline:
  // the bundler folds only a literal test, and only then drops the chunks.
  ...(typeof MESH_HARNESS_PACKAGED === 'boolean' && MESH_HARNESS_PACKAGED ? [] : [{ name: 'demo', summary: 'run the playground on this host (root; network namespaces; a real kube-apiserver when installed)', load: async () => (await import('./commands/demo.ts')).demoCommand }]),
  { name: 'version', summary: 'print the version, and those of the proxy and spire-agent binaries found', load: async () => (await import('./commands/version.ts')).versionCommand },
];

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return ['usage: mesh-harness <command> [options]', '', 'commands:', ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`), '', 'mesh-harness <command> --help for the options of one command.'].join('\n');
}

export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    write(name === undefined ? io.stderr : io.stdout, usage());
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const entry = commands.find((c) => c.name === (name === '--version' ? 'version' : name));
  if (!entry) {
    write(io.stderr, `mesh-harness: unknown command "${name}"\n\n${usage()}`);
    return EXIT.USAGE;
  }
  const command = await entry.load();
  if (args.includes('--help') || args.includes('-h')) {
    write(io.stdout, `${entry.summary}\nusage: ${command.usage}`);
    return EXIT.OK;
  }
  try {
    return await command.run(args, io);
  } catch (err) {
    reportError(name, err, io);
    return exitCodeOf(err);
  }
}

/** How a failed command tells the operator: the error's class decides the exit code (see util/errors.ts). */
function reportError(name: string, err: unknown, io: CommandIo): void {
  if (err instanceof ConfigError) {
    const { problems } = err;
    report(io, PRIORITY.err, [`mesh-harness ${name}: invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):`, ...problems.map((p) => `  ${p}`)].join('\n'));
    return;
  }
  const message = (err as Error)?.message ?? String(err);
  report(io, PRIORITY.err, err instanceof HarnessError && message.startsWith('mesh-harness') ? message : `mesh-harness ${name}: ${message}`);
  if (io.env.MESH_HARNESS_DEBUG) report(io, PRIORITY.debug, (err as Error)?.stack ?? '');
}

const isEntryPoint = process.argv[1] !== undefined && /mesh-harness(\.m?js|\.ts)?$|cli[/\\]main\.ts$/.test(process.argv[1]);
if (isEntryPoint) {
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => {
      process.exitCode = code;
      // The daemon returns after shutdown; open handles must not keep a stopped harness alive.
      // check returns at its deadline; a probe it gave up on (a black-holed DNS lookup in the
      // thread pool) must not keep it running.
      if (process.argv[2] === 'run' || process.argv[2] === 'check') setImmediate(() => process.exit(code));
    },
    (err: unknown) => {
      report({ stderr: process.stderr, env: process.env }, PRIORITY.crit, `mesh-harness: unexpected failure: ${String(err)}`);
      process.exit(EXIT.FAILURE);
    },
  );
}
