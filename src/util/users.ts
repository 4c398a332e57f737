/**
 * Users and groups by name, through NSS (getent), so LDAP/SSSD accounts resolve like local
 * ones. Names are validated before they reach getent and passed after `--`, so no name can
 * be read as an option; an account that resolves to id 0 is refused, because the rules
 * exempt the proxy's uid and gid from redirection and root's traffic would bypass the mesh.
 */
import { execFile } from 'node:child_process';
import { ConfigError, UnavailableError } from './errors.ts';

export interface ResolvedUser {
  name: string;
  uid: number;
  /** The user's primary group. */
  gid: number;
}

export interface ResolvedGroup {
  name: string;
  gid: number;
}

/** POSIX-ish account names (as useradd accepts them, plus a trailing $ for machine accounts) or a numeric id. */
export const ACCOUNT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}\$?$/;

/** A configured user or group that cannot be used: a config error (78) naming the field. */
export class UnknownAccountError extends ConfigError {
  constructor(
    readonly kind: 'user' | 'group',
    readonly account: string,
    reason: string,
    field = `proxy.${kind}`,
  ) {
    super([`${field}: got ${JSON.stringify(account.slice(0, 64))}; ${reason}`]);
  }
}

function missing(kind: 'user' | 'group', account: string, field: string): UnknownAccountError {
  const create = field.startsWith('proxy.') ? ` (the package does: ${kind === 'user' ? 'useradd' : 'groupadd'} --system meshproxy)` : '';
  return new UnknownAccountError(kind, account, `${kind} "${account}" does not exist on this host; create it${create} or set ${field}`, field);
}

/** Looks up one NSS database entry; undefined when there is none. */
function getent(database: 'passwd' | 'group', key: string): Promise<string[] | undefined> {
  return new Promise((resolve, reject) => {
    execFile('getent', [database, '--', key], { timeout: 5000 }, (err, stdout) => {
      if (err) {
        // getent exits 2 when the key is not found.
        if ((err as { code?: unknown }).code === 2) return resolve(undefined);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new UnavailableError('getent not found on PATH (package libc-bin); cannot resolve users and groups'));
        return reject(new UnavailableError(`getent ${database} failed for ${JSON.stringify(key)}: ${err.message.split('\n')[0]}`));
      }
      const line = stdout.split('\n')[0] ?? '';
      resolve(line ? line.split(':') : undefined);
    });
  });
}

async function lookup(kind: 'user' | 'group', account: string, field: string): Promise<{ fields: string[]; id: number }> {
  if (!ACCOUNT_NAME.test(account)) {
    throw new UnknownAccountError(kind, account, `must be a ${kind} name (letters, digits, "_", ".", "-", not starting with "-") or a numeric id`, field);
  }
  const fields = await getent(kind === 'user' ? 'passwd' : 'group', account);
  const id = Number(fields?.[2]);
  if (!fields || fields[2] === undefined || fields[2] === '' || !Number.isInteger(id)) throw missing(kind, account, field);
  if (id === 0) {
    const why = field.startsWith('proxy.')
      ? `the proxy's ${kind} is exempt from redirection, so root's traffic would bypass the mesh: use the unprivileged meshproxy account`
      : `${field} must name an unprivileged account, such as nobody`;
    throw new UnknownAccountError(kind, account, `resolves to ${kind === 'user' ? 'uid' : 'gid'} 0 (${fields[0]}); ${why}`, field);
  }
  return { fields, id };
}

/** The name of a group id, any group (root's too); undefined when it has none. */
export async function groupName(gid: number): Promise<string | undefined> {
  return (await getent('group', String(gid)))?.[0];
}

/** Resolves a user name or numeric uid; `field` names the setting in errors. */
export async function resolveUser(user: string, field = 'proxy.user'): Promise<ResolvedUser> {
  const { fields, id } = await lookup('user', user, field);
  return { name: fields[0]!, uid: id, gid: Number(fields[3]) };
}

/** Resolves a group name or numeric gid; `field` names the setting in errors. */
export async function resolveGroup(group: string, field = 'proxy.group'): Promise<ResolvedGroup> {
  const { fields, id } = await lookup('group', group, field);
  return { name: fields[0]!, gid: id };
}
