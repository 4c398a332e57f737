import { ConfigError } from '../config/load.ts';
import { CliError, EXIT } from './exit-codes.ts';
import { write, type Command, type CommandIo } from './command.ts';
import { configCommand } from './commands/config.ts';
import { runCommand } from './commands/run.ts';
import { statusCommand } from './commands/status.ts';
import { versionCommand } from './commands/version.ts';

const commands: Command[] = [runCommand, statusCommand, configCommand, versionCommand];

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
  if (name === '--version') return versionCommand.run([], io);
  const command = commands.find((c) => c.name === name);
  if (!command) {
    write(io.stderr, `mesh-harness: unknown command "${name}"\n\n${usage()}`);
    return EXIT.USAGE;
  }
  if (args.includes('--help') || args.includes('-h')) {
    write(io.stdout, `${command.summary}\nusage: ${command.usage}`);
    return EXIT.OK;
  }
  try {
    return await command.run(args, io);
  } catch (err) {
    if (err instanceof ConfigError) {
      write(io.stderr, `mesh-harness ${name}: invalid configuration (${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}):`);
      for (const problem of err.problems) write(io.stderr, `  ${problem}`);
      return EXIT.CONFIG;
    }
    if (err instanceof CliError) {
      write(io.stderr, err.message);
      return err.exitCode;
    }
    write(io.stderr, `mesh-harness ${name}: ${(err as Error).message ?? String(err)}`);
    if (io.env.MESH_HARNESS_DEBUG) write(io.stderr, (err as Error).stack ?? '');
    return EXIT.FAILURE;
  }
}

const isEntryPoint = process.argv[1] !== undefined && /mesh-harness(\.m?js|\.ts)?$|cli[/\\]main\.ts$/.test(process.argv[1]);
if (isEntryPoint) {
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => {
      process.exitCode = code;
      // The daemon returns after shutdown; open handles must not keep a stopped harness alive.
      if (process.argv[2] === 'run') setImmediate(() => process.exit(code));
    },
    (err: unknown) => {
      process.stderr.write(`mesh-harness: unexpected failure: ${String(err)}\n`);
      process.exit(EXIT.FAILURE);
    },
  );
}
