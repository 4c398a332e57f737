/**
 * The checks a configuration needs the host for: accounts, files, programs. `run`, `proxy
 * env` and `config validate` make all of them before anything starts and report every
 * problem at once, each as a configuration error (78) naming the field; `config validate
 * --file-only` (a file checked on another machine, or before the package is installed)
 * leaves them out and lists them.
 */
import { readFileSync } from 'node:fs';
import { parseTrustAnchors } from '../identity/verify.ts';
import { findExecutable } from '../supervisor/which.ts';
import { ConfigError } from '../util/errors.ts';
import { resolveGroup, resolveUser } from '../util/users.ts';
import type { HarnessConfig } from './types.ts';

/** What `config validate --file-only` leaves to the host, in the words it prints. */
export const HOST_CHECKS = [
  'proxy.user and proxy.group exist on this host and are not root',
  'identity.trustAnchorsFile is readable and holds CA certificates in PEM form',
  'proxy.binary (and spire.agentBinary in managed mode) is an executable program',
];

/** The message for a trust anchors file that cannot be read; shared with the identity component. */
export function anchorsFileError(file: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `trust anchors file ${file} does not exist; write the mesh trust anchor PEM there or set identity.trustAnchorsFile`;
  if (code === 'EACCES') return `trust anchors file ${file}: permission denied; make it readable by the harness`;
  if (code === 'EISDIR') return `trust anchors file ${file} is a directory; point identity.trustAnchorsFile at the PEM file`;
  return `trust anchors file ${file} cannot be read: ${(err as Error).message}`;
}

/** The trust anchors PEM as `run` gives it to the proxy; a ConfigError when it is unusable. */
export function readTrustAnchorsPem(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`identity.trustAnchorsFile: ${anchorsFileError(file, err)}`]);
  }
  try {
    parseTrustAnchors(pem, file);
  } catch (err) {
    throw new ConfigError([`identity.trustAnchorsFile: ${(err as Error).message}`]);
  }
  return pem;
}

function programProblem(field: string, command: string, pathEnv: string | undefined): string[] {
  if (findExecutable(command, pathEnv)) return [];
  const where = command.includes('/') ? 'is not an executable file' : 'is not found on PATH or in the system directories';
  return [`${field}: got ${JSON.stringify(command)}; ${where}; install it or set ${field} to its path`];
}

/** Every host problem of a configuration, all at once. */
export async function hostProblems(config: HarnessConfig, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const problems: string[] = [];
  const accounts = await Promise.allSettled([resolveUser(config.proxy.user), resolveGroup(config.proxy.group)]);
  for (const result of accounts) {
    if (result.status === 'rejected') {
      if (!(result.reason instanceof ConfigError)) throw result.reason;
      problems.push(...result.reason.problems);
    }
  }
  try {
    readTrustAnchorsPem(config.identity.trustAnchorsFile);
  } catch (err) {
    problems.push(...(err as ConfigError).problems);
  }
  problems.push(...programProblem('proxy.binary', config.proxy.binary, env.PATH));
  if (config.spire.mode === 'managed') problems.push(...programProblem('spire.agentBinary', config.spire.agentBinary, env.PATH));
  return problems;
}
