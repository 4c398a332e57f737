/**
 * The ports sshd listens on, read from its configuration, so that SSH on a non-standard
 * port is exempt from redirection as surely as port 22. Read at the edge (before the pure
 * render); an unreadable or absent configuration yields no extra port, and 22 stays
 * exempt regardless.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const SSHD_CONFIG_DIR = '/etc/ssh';

/** `Port N` lines and `ListenAddress host:N` / `[v6]:N` ports of one sshd_config text. */
export function parseSshdPorts(text: string): number[] {
  const ports: number[] = [];
  const add = (value: string | undefined) => {
    const port = Number(value);
    if (Number.isInteger(port) && port > 0 && port < 65536) ports.push(port);
  };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    // sshd keywords are case-insensitive and may be separated by spaces or "=".
    const match = /^(\w+)\s*[=\s]\s*(\S+)/.exec(line);
    if (!match) continue;
    const keyword = match[1]!.toLowerCase();
    if (keyword === 'port') add(match[2]);
    else if (keyword === 'listenaddress') add(/^(?:\[[^\]]+\]|[^:]+):(\d+)$/.exec(match[2]!)?.[1]);
  }
  return ports;
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Ports from sshd_config and every sshd_config.d/*.conf (the drop-ins Debian and RHEL
 * include). Sorted, without duplicates; empty when nothing can be read.
 */
export function sshdPorts(dir = SSHD_CONFIG_DIR): number[] {
  let dropIns: string[] = [];
  try {
    dropIns = readdirSync(join(dir, 'sshd_config.d')).filter((f) => f.endsWith('.conf')).sort().map((f) => join(dir, 'sshd_config.d', f));
  } catch {
    // No drop-in directory.
  }
  const ports = [join(dir, 'sshd_config'), ...dropIns].flatMap((file) => parseSshdPorts(readOrEmpty(file)));
  return [...new Set(ports)].sort((a, b) => a - b);
}
