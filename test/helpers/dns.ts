/**
 * DNS for tests, inside a network namespace the test created: a per-namespace
 * /etc/netns/<ns>/resolv.conf (which `ip netns exec` mounts over /etc/resolv.conf, so
 * getaddrinfo in the namespace uses it) and a tiny authoritative server that answers A
 * records for the names it is given and NXDOMAIN for every other name.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { startScriptIn, type Netns } from './netns.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Writes the namespace's resolv.conf; removed at teardown. */
export function setNetnsResolvConf(t: Teardown, ns: Netns, text: string): void {
  const dir = `/etc/netns/${ns.name}`;
  mkdirSync(dir, { recursive: true });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(`${dir}/resolv.conf`, text);
}

const SERVER = `
const dgram = require('node:dgram');
const records = JSON.parse(process.argv[1]);
const u16 = (n) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
const socket = dgram.createSocket('udp4');
socket.on('message', (query, from) => {
  let offset = 12;
  const labels = [];
  while (query[offset] !== 0) { labels.push(query.subarray(offset + 1, offset + 1 + query[offset]).toString()); offset += query[offset] + 1; }
  const qtype = query.readUInt16BE(offset + 1);
  const question = query.subarray(12, offset + 5);
  const address = records[labels.join('.').toLowerCase()];
  // Known name: its A record (AAAA gets an empty answer). Unknown name: NXDOMAIN (rcode 3).
  const answer = address !== undefined && qtype === 1
    ? Buffer.concat([u16(0xc00c), u16(1), u16(1), u32(60), u16(4), Buffer.from(address.split('.').map(Number))])
    : Buffer.alloc(0);
  const header = Buffer.concat([query.subarray(0, 2), u16(0x8580 | (address === undefined ? 3 : 0)), u16(1), u16(answer.length ? 1 : 0), u16(0), u16(0)]);
  socket.send(Buffer.concat([header, question, answer]), from.port, from.address);
});
socket.bind(53, '127.0.0.1', () => console.log('ready'));
`;

/** Starts the DNS server on 127.0.0.1:53 inside the namespace and points its resolv.conf at it. */
export async function startDnsServer(t: Teardown, ns: Netns, records: Record<string, string>): Promise<void> {
  await startScriptIn(t, ns, 'DNS server', SERVER, [JSON.stringify(records)]);
  setNetnsResolvConf(t, ns, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
}
