import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSshdPorts, sshdPorts } from '../../../src/iptables/sshd.ts';
import { tempDir } from '../../helpers/tmp.ts';

t.test('Port and ListenAddress lines, case-insensitive, comments ignored', async (t) => {
  t.same(parseSshdPorts('Port 2222\n#Port 9999\nport=2200\nListenAddress 10.0.0.1:2022\nListenAddress [::1]:2023\nListenAddress 0.0.0.0\nPort banana\n'), [2222, 2200, 2022, 2023]);
});

t.test('sshd_config and its drop-ins; an unreadable directory gives nothing', async (t) => {
  const dir = tempDir(t, 'mh-core-sshd-');
  mkdirSync(join(dir, 'sshd_config.d'));
  writeFileSync(join(dir, 'sshd_config'), 'Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n');
  writeFileSync(join(dir, 'sshd_config.d', '10-port.conf'), 'Port 2222\n');
  writeFileSync(join(dir, 'sshd_config.d', 'ignored.txt'), 'Port 3333\n');
  t.same(sshdPorts(dir), [22, 2222]);
  t.same(sshdPorts(join(dir, 'absent')), []);
});
