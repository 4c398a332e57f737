import { execFile } from 'node:child_process';

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

/** Raised when a configured user or group does not exist on this host. */
export class UnknownAccountError extends Error {
  constructor(
    readonly kind: 'user' | 'group',
    readonly account: string,
    /** The setting that names the account, for the fix in the message. */
    readonly setting: string = kind === 'user' ? 'proxy.user' : 'proxy.group',
  ) {
    super(
      setting.startsWith('proxy.')
        ? `${kind} "${account}" does not exist on this host; create it (the package does: ${kind === 'user' ? 'useradd' : 'groupadd'} --system meshproxy) or set ${setting}`
        : `${kind} "${account}" does not exist on this host; create it or set ${setting}`,
    );
    this.name = 'UnknownAccountError';
  }
}

/** Looks up one NSS database entry with getent, so LDAP/SSSD accounts resolve like local ones. */
function getent(database: 'passwd' | 'group', key: string): Promise<string[] | undefined> {
  return new Promise((resolve, reject) => {
    execFile('getent', [database, key], { timeout: 5000 }, (err, stdout) => {
      if (err) {
        // getent exits 2 when the key is not found.
        if ((err as { code?: unknown }).code === 2) return resolve(undefined);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new Error('getent not found on PATH (package libc-bin); cannot resolve users and groups'));
        return reject(new Error(`getent ${database} ${key} failed: ${err.message}`));
      }
      const line = stdout.split('\n')[0] ?? '';
      resolve(line ? line.split(':') : undefined);
    });
  });
}

/** Resolves a user name or numeric uid; `setting` names the configuration field in the error. */
export async function resolveUser(user: string, setting?: string): Promise<ResolvedUser> {
  const fields = await getent('passwd', user);
  if (!fields || fields[2] === undefined || fields[3] === undefined) throw new UnknownAccountError('user', user, setting);
  return { name: fields[0]!, uid: Number(fields[2]), gid: Number(fields[3]) };
}

/** Resolves a group name or numeric gid. */
export async function resolveGroup(group: string): Promise<ResolvedGroup> {
  const fields = await getent('group', group);
  if (!fields || fields[2] === undefined) throw new UnknownAccountError('group', group);
  return { name: fields[0]!, gid: Number(fields[2]) };
}
