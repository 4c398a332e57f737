import t from 'tap';
import { chmodSync, chownSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { untrustedConfigFileProblem } from '../../../src/config/file-trust.ts';
import { loadConfig } from '../../../src/config/load.ts';
import { EXIT } from '../../../src/util/errors.ts';
import { tempDir } from '../../helpers/tmp.ts';

const NOBODY = 65534;

function configIn(dir: string, name = 'config.json'): string {
  const path = join(dir, name);
  writeFileSync(path, '{}');
  chmodSync(path, 0o644);
  return path;
}

const judge = (path: string) => untrustedConfigFileProblem(path, statSync(path), [0]);

t.test('root-owned, not writable by group or others, in root-owned directories: trusted (0644 and 0640 alike)', async (t) => {
  const dir = tempDir(t, 'mh-trust-');
  const path = configIn(dir);
  t.equal(judge(path), undefined);
  chmodSync(path, 0o640);
  t.equal(judge(path), undefined);
  chmodSync(path, 0o600);
  t.equal(judge(path), undefined);
  t.equal(statSync('/tmp').mode & 0o1777, 0o1777, 'the temp directory is world-writable with the sticky bit, which is allowed');
});

t.test('a file another account owns, or group or others may write, is refused in one line with the fix', async (t) => {
  const dir = tempDir(t, 'mh-trust-');
  const path = configIn(dir);
  chownSync(path, NOBODY, NOBODY);
  t.equal(judge(path), `config file ${path} is not owned by root (owner 65534:65534, mode 0644); it decides what runs as root (proxy.binary, probes.allowClusterExec, probes.allowClusterHosts), so only root may change it; fix: chown root:root ${path} && chmod go-w ${path}`);
  chownSync(path, 0, 0);
  for (const mode of [0o664, 0o646, 0o666, 0o620]) {
    chmodSync(path, mode);
    t.match(judge(path), new RegExp(`^config file ${path} is writable by group or others \\(owner 0:0, mode 0${mode.toString(8)}\\); .*; fix: chown root:root ${path} && chmod go-w ${path}$`), mode.toString(8));
  }
  t.notMatch(judge(path), /\n/, 'one line');
  t.equal(untrustedConfigFileProblem(path, statSync(path), [0, 1000]) !== undefined, true, 'the running account may own it, but nobody may write it');
  chmodSync(path, 0o644);
  chownSync(path, 1000, 1000);
  t.equal(untrustedConfigFileProblem(path, statSync(path), [0, 1000]), undefined, 'owned by the account running the harness: it gains nothing');
});

t.test('a directory on the way that others could write or own is refused: they could replace the file', async (t) => {
  const dir = tempDir(t, 'mh-trust-');
  const etc = join(dir, 'etc');
  mkdirSync(etc);
  const path = configIn(etc);
  chmodSync(etc, 0o777);
  t.match(judge(path), new RegExp(`^config file ${path} is in directory ${etc}, which group or others can write \\(owner 0:0, mode 0777\\), so they can replace the file; .*; fix: chown root:root ${etc} && chmod go-w ${etc}, or keep the file elsewhere$`));
  chmodSync(etc, 0o1777);
  t.equal(judge(path), undefined, 'with the sticky bit only the file\'s owner (root) may rename or remove it');
  chmodSync(etc, 0o755);
  chownSync(etc, NOBODY, NOBODY);
  t.match(judge(path), new RegExp(`is in directory ${etc}, which is not owned by root \\(owner 65534:65534, mode 0755\\)`));
});

t.test('a symlink is judged by where it leads too', async (t) => {
  const dir = tempDir(t, 'mh-trust-');
  const theirs = join(dir, 'theirs');
  mkdirSync(theirs);
  chownSync(theirs, NOBODY, NOBODY);
  const real = configIn(theirs);
  const safe = join(dir, 'safe');
  mkdirSync(safe);
  const link = join(safe, 'config.json');
  symlinkSync(real, link);
  t.match(judge(link), new RegExp(`is in directory ${theirs}, which is not owned by root`), 'the file is root-owned, but the directory it lives in is not');
});

t.test('loadConfig refuses an untrusted file with exit 78 only when asked to; otherwise it says why', async (t) => {
  const dir = tempDir(t, 'mh-trust-');
  const path = configIn(dir);
  chmodSync(path, 0o666);
  const lenient = loadConfig({ path, env: {} });
  t.match(lenient.untrustedFile, /is writable by group or others/);
  t.throws(() => loadConfig({ path, env: {}, requireTrustedFile: true }), { exitCode: EXIT.CONFIG, message: new RegExp(`^config file ${path} is writable by group or others`) });
  chmodSync(path, 0o644);
  t.equal(loadConfig({ path, env: {}, requireTrustedFile: true }).untrustedFile, undefined);
});
