import t from 'tap';
import { execa } from 'execa';
import { runCli } from '../helpers/cli.ts';

async function demoNamespaces(): Promise<string[]> {
  const list = await execa('ip', ['netns', 'list'], { reject: false });
  return String(list.stdout).split('\n').filter((l) => l.startsWith('mh-demo-'));
}

t.test('mesh-harness demo runs the whole flow and leaves nothing behind', async (t) => {
  const before = await demoNamespaces();
  const res = await runCli(['demo'], { timeoutMs: 180_000 });
  t.equal(res.exitCode, 0, String(res.stderr));
  const out = String(res.stdout);
  t.match(out, /before the mesh: hello from the VM workload; your connection came from 198\.18\.99\.1/);
  t.match(out, /inbound redirect\s+yes, through the proxy/);
  t.match(out, /outbound redirect\s+yes, through the proxy/);
  t.match(out, /proxy crash\s+restarted and ready/);
  t.match(out, /clean stop\s+exit code 0/);
  t.match(out, /rules left in the vm\s+none/);
  t.same(await demoNamespaces(), before, 'no playground namespace left');
});
