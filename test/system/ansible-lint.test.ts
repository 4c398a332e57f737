/**
 * The Ansible role and the example playbook pass ansible-lint's production profile (the
 * strictest), as CI installs it (pinned, from PyPI). A violation fails the test with
 * ansible-lint's own report.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

t.test('ansible-lint --profile production deploy/ansible', async (t) => {
  const result = await run('ansible-lint', ['--offline', '--nocolor', '--profile', 'production', 'deploy/ansible'], { cwd: root, maxBuffer: 16 << 20 }).then(
    (r) => ({ code: 0, out: `${r.stdout}${r.stderr}` }),
    (e: { code?: number | string; stdout?: string; stderr?: string }) => ({ code: e.code, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
  );
  t.not(result.code, 'ENOENT', 'ansible-lint is installed (CI: python3 -m venv /opt/ansible-lint && /opt/ansible-lint/bin/pip install ansible-lint)');
  t.equal(result.code, 0, 'no violation', { report: result.out.slice(-4000) });
  t.match(result.out, /Profile 'production' was required, and it passed/);
});
