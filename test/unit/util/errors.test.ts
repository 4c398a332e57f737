// Exit codes come from the error's class, never its name (issue 13 item 7).
import t from 'tap';
import { CliError } from '../../../src/cli/exit-codes.ts';
import { IptablesCommandError, IptablesUnavailableError } from '../../../src/iptables/errors.ts';
import { ProxyEnvError } from '../../../src/proxy/env.ts';
import { ConfigError, exitCodeOf, UsageError } from '../../../src/util/errors.ts';
import { resolveUser, UnknownAccountError } from '../../../src/util/users.ts';

t.test('each kind of error maps to its exit code', async (t) => {
  t.equal(exitCodeOf(new ConfigError(['a: got 1; must be 2'])), 78);
  t.equal(exitCodeOf(new ProxyEnvError(['proxy.extraEnv.X: the harness renders this variable itself'])), 78, 'an extraEnv conflict is a config error, as at load');
  t.equal(exitCodeOf(new UnknownAccountError('user', 'nobody-here', 'does not exist')), 78);
  t.equal(exitCodeOf(new IptablesUnavailableError('no iptables')), 69);
  t.equal(exitCodeOf(new UsageError('bad flag')), 64);
  t.equal(exitCodeOf(new CliError('x', 69)), 69);
  t.equal(exitCodeOf(new IptablesCommandError('failed', '')), 1);
  t.equal(exitCodeOf(new TypeError('bug')), 1);
  t.equal(exitCodeOf('a string'), 1);
  // A name is not a class: an error that merely calls itself ConfigError is not one.
  const impostor = Object.assign(new Error('x'), { name: 'ConfigError', problems: ['x'] });
  t.equal(exitCodeOf(impostor), 1);
});

t.test('a missing proxy user is a configuration error wherever it is found', async (t) => {
  const err = await resolveUser('mh-config-no-such-user').catch((e: unknown) => e);
  t.ok(err instanceof ConfigError);
  t.equal(exitCodeOf(err), 78);
  t.match((err as ConfigError).problems, [/^proxy\.user: got "mh-config-no-such-user"; user "mh-config-no-such-user" does not exist/]);
});
