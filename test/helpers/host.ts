/**
 * What tests need from the machine beyond Node.js, and the skip reason when it is missing:
 * one line naming what is missing and the command that installs it. `scripts/setup.sh`
 * gives what the playground needs (root's tools: iproute2, iptables, nftables, setpriv,
 * python3, openssl; the meshproxy account); `scripts/setup.sh --full` adds SPIRE,
 * kube-apiserver, the packaging tools and the test VM image.
 *
 * Under CI (CI is set) nothing skips: CI runs the full setup, and a missing piece must fail
 * the run, not hide in a skip count.
 */
import { spawnSync } from 'node:child_process';
import { findExecutable } from '../../src/supervisor/which.ts';

export const SETUP = 'scripts/setup.sh';
export const FULL_SETUP = 'scripts/setup.sh --full';

/** The commands of `names` not found on PATH (nor in the system directories). */
export function missingCommands(names: string[]): string[] {
  return names.filter((name) => !findExecutable(name));
}

/** false (run) when nothing is missing or under CI; else the skip reason. */
export function skipUnless(missing: string[], setup: string): string | false {
  if (missing.length === 0 || process.env.CI) return false;
  return `${missing.join(', ')} missing: run ${setup}`;
}

/** The reason to skip for a test that needs root, else `otherwise`. */
function asRoot(otherwise: string | false): string | false {
  if (process.getuid?.() === 0 || process.env.CI) return otherwise;
  return 'needs root: run npm test as root';
}

function accountMissing(name: string): boolean {
  return spawnSync('id', ['-u', name], { stdio: 'ignore' }).status !== 0;
}

/**
 * Root, network namespaces with real iptables in them, children run as other accounts,
 * and the meshproxy account the harness's defaults name: what `scripts/setup.sh` leaves.
 */
export const SKIP_WITHOUT_SETUP = asRoot(
  skipUnless(
    [
      ...missingCommands(['ip', 'iptables-restore', 'ip6tables-restore', 'iptables-legacy-restore', 'nft', 'setpriv', 'python3', 'openssl']),
      ...(accountMissing('meshproxy') ? ['the meshproxy account'] : []),
    ],
    SETUP,
  ),
);

/** `npm run package` and what the package tests read its output with. */
export const SKIP_WITHOUT_PACKAGING = skipUnless(missingCommands(['git', 'dpkg-deb', 'rpmbuild', 'rpm2archive', 'lintian', 'file', 'xz']), FULL_SETUP);

/** The test VM: scripts/build-test-vm.sh (debootstrap, an ext4 image, qcow2) and qemu to boot it. */
export const SKIP_WITHOUT_VM = asRoot(skipUnless(missingCommands(['debootstrap', 'mkfs.ext4', 'qemu-img', 'qemu-system-x86_64', 'dpkg-deb']), FULL_SETUP));
