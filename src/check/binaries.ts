/**
 * Binaries area: the iptables programs of the backend in use and the matches the rules
 * need, tried for real in a throwaway network namespace; the proxy and spire-agent
 * executables, run once for their versions.
 */
import type { HarnessConfig } from '../config/types.ts';
import { controlPlaneProxyIn } from '../protocol/proxy-image.ts';
import { compareWithControlPlane, summarizeInstall } from '../proxy/install-record.ts';
import type { FamilyTools } from '../iptables/backend.ts';
import { classifyFailure } from '../iptables/errors.ts';
import { CommandNotFoundError } from '../iptables/runner.ts';
import { PROBE_TIMEOUT_MS } from '../supervisor/binary-probe.ts';
import { fail, ok, skip, warn, type Check, type Outcome } from './check.ts';
import type { CheckEffects } from './effects.ts';
import type { Facts } from './facts.ts';

const INSTALL_IPTABLES = 'install iptables (apt-get install iptables, or dnf install iptables-nft), or set iptables.backend to the backend this host has';

/**
 * One rule with every match and target the harness's ruleset uses, in a chain of our own.
 * It is loaded into a new, empty network namespace (`unshare --net`) that disappears with
 * the command, so the host's own rules are never read or written.
 */
export const MATCH_PROBE_RULES = [
  '*nat',
  ':MESH_HARNESS_CHECK - [0:0]',
  '-A MESH_HARNESS_CHECK -p tcp -m owner --gid-owner 0 -m comment --comment "mesh-harness check" -j RETURN',
  '-A MESH_HARNESS_CHECK -p tcp -m multiport --dports 22,4190:4191 -m comment --comment "mesh-harness check" -j RETURN',
  '-A MESH_HARNESS_CHECK -p tcp -m comment --comment "mesh-harness check" -j REDIRECT --to-ports 4143',
  'COMMIT',
  '',
].join('\n');

async function probeMatches(effects: CheckEffects, tools: FamilyTools, timeoutMs: number): Promise<Outcome | undefined> {
  let result;
  try {
    result = await effects.runner.run(['unshare', '--net', '--', tools.restore, '-w', '2'], { input: MATCH_PROBE_RULES, timeoutMs });
  } catch (err) {
    if (err instanceof CommandNotFoundError) return warn('unshare is not installed, so the matches could not be tried', 'install util-linux (it provides unshare)');
    throw err;
  }
  if (result.exitCode === 0) return undefined;
  if (/^unshare:/m.test(result.stderr)) {
    return warn(`cannot create a throwaway network namespace to try the rules in (${result.stderr.trim()})`, 'run mesh-harness check as root to test the owner, comment and multiport matches');
  }
  return fail(classifyFailure(tools.restore, result.exitCode, result.stderr).message, 'load the kernel modules named above (the harness loads its rules with the same program)');
}

export function iptablesChecks(config: HarnessConfig, facts: Facts): Check[] {
  const disabled = async (): Promise<Outcome> => skip('iptables.enabled is false');
  return [
    {
      id: 'binaries.iptables',
      area: 'binaries',
      name: 'iptables programs of the backend in use are installed',
      timeoutMs: 4000,
      timeoutHint: 'iptables-save did not finish; a host with a very large ruleset may need iptables.backend set explicitly',
      async run() {
        if (!config.iptables.enabled) return disabled();
        try {
          const backend = await facts.backend();
          return ok(`${backend.mode} backend (${backend.reason}): ${backend.families.map((f) => f.restore).join(', ')}`);
        } catch (err) {
          return fail((err as Error).message, INSTALL_IPTABLES);
        }
      },
    },
    {
      id: 'binaries.iptables-matches',
      area: 'binaries',
      name: 'the owner, comment and multiport matches and the REDIRECT target work',
      timeoutMs: 4000,
      timeoutHint: 'iptables-restore did not finish in a throwaway namespace; is the xtables lock held (another iptables-restore)?',
      async run() {
        if (!config.iptables.enabled) return disabled();
        const backend = await facts.backend().catch(() => undefined);
        if (!backend) return skip('no iptables backend; see above');
        for (const tools of backend.families) {
          const problem = await probeMatches(facts.effects, tools, facts.ms(1500));
          if (problem) return problem;
        }
        return ok(`tried in a throwaway network namespace with ${backend.families.map((f) => f.restore).join(', ')}`);
      },
    },
  ];
}

export function binaryChecks(config: HarnessConfig, facts: Facts): Check[] {
  const probeOf = (configured: string) => facts.effects.probeBinary(configured, facts.ms(PROBE_TIMEOUT_MS));
  return [
    {
      id: 'binaries.proxy',
      area: 'binaries',
      name: 'linkerd2-proxy (proxy.binary) is present and runnable',
      timeoutMs: 3000,
      timeoutHint: 'the binary hangs when started without its environment; is proxy.binary really linkerd2-proxy?',
      async run() {
        const probe = await probeOf(config.proxy.binary);
        if (!probe.path) {
          return fail(
            `${config.proxy.binary}: ${probe.note}${config.proxy.binary.includes('/') ? '' : ' on PATH'}`,
            probe.note === 'not found'
              ? "mesh-harness proxy install (the control plane's proxy image; --image REF or --from FILE without a registered harness), or set proxy.binary"
              : `chmod 755 ${config.proxy.binary}`,
          );
        }
        if (!probe.runnable) return fail(`${probe.path}: ${probe.note ?? 'cannot be run'}`, `check that it is linkerd2-proxy built for this machine: file ${probe.path}`);
        // linkerd2-proxy has no --version: it exits 64 on an empty environment, which proves it runs.
        return ok(`${probe.path}${probe.version ? ` ${probe.version}` : ' (runs; linkerd2-proxy reports no version)'}`);
      },
    },
    {
      id: 'binaries.proxy-version',
      area: 'binaries',
      name: "linkerd2-proxy is the control plane's release",
      timeoutMs: 3000,
      timeoutHint: 'hashing the proxy binary took too long; is it on a hung network file system?',
      async run() {
        const [{ path, installed }, daemon] = await Promise.all([facts.effects.installedProxy(config.proxy.binary), facts.daemon()]);
        if (!path) return skip(`${config.proxy.binary} not found; see the check above`);
        const controlPlane = daemon.running ? controlPlaneProxyIn(daemon.status.components) : undefined;
        const { line, differs } = compareWithControlPlane(summarizeInstall(installed), controlPlane?.version);
        const reinstall = `mesh-harness proxy install${controlPlane ? '' : ' --image cr.l5d.io/linkerd/proxy:<the cluster\'s Linkerd version>'}`;
        if (differs) return warn(line, `${reinstall} installs ${controlPlane!.image} (then systemctl restart mesh-harness); a proxy of another release usually works, but is not what the cluster was tested with`);
        if (installed.state === 'changed' || installed.state === 'unreadable') return warn(line, `${reinstall} installs a recorded one again`);
        if (installed.state === 'unrecorded') return skip(line);
        return ok(line);
      },
    },
    {
      id: 'binaries.spire-agent',
      area: 'binaries',
      name: 'spire-agent (spire.agentBinary) is present and runnable',
      timeoutMs: 3000,
      timeoutHint: 'spire-agent --version hangs; check the binary',
      async run() {
        const probe = await probeOf(config.spire.agentBinary);
        const managed = config.spire.mode === 'managed';
        if (!probe.path) {
          return managed
            ? fail(`${config.spire.agentBinary}: ${probe.note}`, 'install spire-agent (scripts/install-spire.sh builds the pinned version) or set spire.agentBinary')
            : skip(`${config.spire.agentBinary}: ${probe.note}; spire.mode is external, so another agent serves ${config.identity.workloadApiSocket}`);
        }
        if (!probe.runnable) {
          const outcome = `${probe.path}: ${probe.note ?? 'cannot be run'}`;
          return managed ? fail(outcome, `make it executable and check it is built for this machine (file ${probe.path})`) : skip(`${outcome}; not used in external mode`);
        }
        return ok(`${probe.path} ${probe.version ?? '(version unknown)'}`);
      },
    },
  ];
}
