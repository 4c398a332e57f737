/**
 * How the iptables code runs programs. Production runs them on the host; tests and the
 * benchmark give a prefix such as ['ip', 'netns', 'exec', 'mh-x'] so that the very same
 * code acts on a network namespace they created.
 */
import { execa } from 'execa';
import { createInterface } from 'node:readline';
import { tiedArgv } from '../supervisor/child.ts';
import { findExecutable } from '../supervisor/which.ts';

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the program's standard input. */
  input?: string;
  timeoutMs?: number;
  /** Told the process id as soon as the program starts (the watcher ignores our own changes by it). */
  onSpawn?: (pid: number) => void;
}

/** A long-running program whose output is read line by line. */
export interface LineStream {
  readonly pid: number | undefined;
  /** Resolves with the exit code (or the signal name) once the program has ended. */
  readonly exited: Promise<number | string>;
  stop(): void;
}

export interface CommandRunner {
  /** Runs a program to completion. Never rejects on a non-zero exit; rejects when it cannot start. */
  run(argv: string[], options?: RunOptions): Promise<CommandResult>;
  /** Starts a program and hands each line of its standard output to `onLine`. */
  stream(argv: string[], onLine: (line: string) => void): LineStream;
  /** Absolute path of a program on PATH, or undefined. */
  which(name: string): string | undefined;
}

export interface ExecRunnerOptions {
  /** Put in front of every command, such as ['ip', 'netns', 'exec', 'mh-test']. */
  prefix?: string[];
  env?: NodeJS.ProcessEnv;
}

/** Raised when a program could not be started at all. */
export class CommandNotFoundError extends Error {
  constructor(readonly program: string) {
    super(`${program}: not found`);
    this.name = 'CommandNotFoundError';
  }
}

export function execRunner(options: ExecRunnerOptions = {}): CommandRunner {
  const prefix = options.prefix ?? [];
  const env = options.env ?? process.env;
  // Every program runs tied to the harness (parent-death signal, own process group), so a
  // SIGKILLed harness leaves no nft monitor or iptables-restore behind.
  const command = (argv: string[]): [string, string[]] => {
    const { file, args } = tiedArgv([...prefix, ...argv]);
    return [file, args];
  };
  return {
    async run(argv, runOptions = {}) {
      const [file, args] = command(argv);
      const program = prefix[0] ?? argv[0]!;
      const child = execa(file, args, {
        env,
        extendEnv: false,
        detached: true,
        reject: false,
        stripFinalNewline: false,
        ...(runOptions.input !== undefined ? { input: runOptions.input } : { stdin: 'ignore' }),
        timeout: runOptions.timeoutMs ?? 30_000,
      });
      if (child.pid !== undefined) runOptions.onSpawn?.(child.pid);
      const result = await child;
      // Not found: ENOENT when spawned directly, 127 from the launch shell's exec otherwise.
      if ((result.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' || (file !== program && result.exitCode === 127 && /not found/.test(String(result.stderr ?? '')))) throw new CommandNotFoundError(program);
      if (result.timedOut) return { exitCode: 124, stdout: String(result.stdout ?? ''), stderr: `${program} timed out after ${runOptions.timeoutMs ?? 30_000} ms` };
      return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
    },
    stream(argv, onLine) {
      const [file, args] = command(argv);
      const child = execa(file, args, { env, extendEnv: false, detached: true, reject: false, stdin: 'ignore', stderr: 'ignore', buffer: false });
      if (child.stdout) createInterface({ input: child.stdout }).on('line', onLine);
      const exited = child.then((r) => r.exitCode ?? r.signal ?? 'failed to start');
      return {
        pid: child.pid,
        exited,
        stop: () => {
          // The whole group: with a prefix (ip netns exec) or a helper of its own, nothing stays.
          try {
            if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
          } catch {
            child.kill('SIGTERM');
          }
        },
      };
    },
    which: (name) => findExecutable(name, env.PATH, { systemDirs: false }),
  };
}

