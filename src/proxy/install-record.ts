/**
 * What `mesh-harness proxy install` installed, recorded in a small JSON file beside the
 * binary (`<binary>.install.json`): the image, its digests, the Linkerd version (the
 * image's tag) and linkerd2-proxy's own version. linkerd2-proxy has no `--version`, so this
 * record is how `version`, `status`, `check` and the registrar learn which proxy a VM runs.
 *
 * The record vouches for one file only: it carries the binary's sha256, and a binary that
 * no longer matches (replaced by hand, a package) is reported as changed, never under the
 * record's version.
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';

/** Where the proxy is in Linkerd's proxy image (cr.l5d.io/linkerd/proxy), and where the package expects it. */
export const PROXY_IMAGE_BINARY = 'usr/lib/linkerd/linkerd2-proxy';
/** linkerd2-proxy's own release, as the image carries it beside the binary. */
export const PROXY_IMAGE_VERSION_FILE = 'usr/lib/linkerd/linkerd2-proxy-version.txt';
export const DEFAULT_PROXY_BINARY = `/${PROXY_IMAGE_BINARY}`;

export interface ProxyInstallRecord {
  schemaVersion: 1;
  /** The installed file and its content's sha256 (hex) and size. */
  binary: string;
  sha256: string;
  size: number;
  /** The image as it was named: a reference, or the path of an OCI archive or layout. */
  source: string;
  sourceKind: 'registry' | 'oci-layout';
  /** The image's tag, which for Linkerd's proxy image is the Linkerd release (edge-25.4.1); empty when unknown. */
  version: string;
  /** linkerd2-proxy's own release (v2.290.0), when the image says. */
  proxyVersion?: string;
  /** The platform's manifest, and the multi-platform index it was chosen from. */
  manifestDigest: string;
  indexDigest?: string;
  /** linux/amd64, linux/arm64/v8. */
  platform: string;
  installedAt: string;
  /** The mesh-harness version that installed it. */
  installedBy: string;
}

export type InstalledProxy =
  | { state: 'recorded'; record: ProxyInstallRecord }
  /** A record exists, but the binary is not the file it describes. */
  | { state: 'changed'; record: ProxyInstallRecord; reason: string }
  /** No record: not installed by `mesh-harness proxy install`. */
  | { state: 'unrecorded' }
  | { state: 'unreadable'; reason: string };

export function installRecordPath(binary: string): string {
  return `${binary}.install.json`;
}

function parseRecord(text: string): ProxyInstallRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = value as Partial<ProxyInstallRecord> | null;
  const strings = ['binary', 'sha256', 'source', 'version', 'manifestDigest', 'platform', 'installedAt', 'installedBy'] as const;
  if (!r || typeof r !== 'object' || r.schemaVersion !== 1 || !strings.every((k) => typeof r[k] === 'string') || typeof r.size !== 'number') return undefined;
  if (r.sourceKind !== 'registry' && r.sourceKind !== 'oci-layout') return undefined;
  if ((r.proxyVersion !== undefined && typeof r.proxyVersion !== 'string') || (r.indexDigest !== undefined && typeof r.indexDigest !== 'string')) return undefined;
  return r as ProxyInstallRecord;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** Hashes of files as last seen (device, inode, size, mtime): the daemon asks at every proxy start. */
const hashes = new Map<string, { key: string; sha256: string }>();

/** The record for `binary`, checked against the file it describes. */
export async function readInstalledProxy(binary: string): Promise<InstalledProxy> {
  let text: string;
  try {
    text = readFileSync(installRecordPath(binary), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'unrecorded' };
    return { state: 'unreadable', reason: `${installRecordPath(binary)}: ${(err as Error).message}` };
  }
  const record = parseRecord(text);
  if (!record) return { state: 'unreadable', reason: `${installRecordPath(binary)} is not an install record of mesh-harness proxy install` };
  let stat;
  try {
    stat = statSync(binary);
  } catch (err) {
    return { state: 'changed', record, reason: `${binary}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  if (stat.size !== record.size) return { state: 'changed', record, reason: `${binary} is ${stat.size} bytes, not the ${record.size} installed` };
  const key = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeMs}`;
  let sha256 = hashes.get(binary)?.key === key ? hashes.get(binary)!.sha256 : undefined;
  if (!sha256) {
    try {
      sha256 = await sha256File(binary);
    } catch (err) {
      return { state: 'unreadable', reason: `${binary}: ${(err as Error).message}` };
    }
    hashes.set(binary, { key, sha256 });
  }
  if (sha256 !== record.sha256) return { state: 'changed', record, reason: `${binary} has sha256 ${sha256.slice(0, 12)}…, not the ${record.sha256.slice(0, 12)}… installed` };
  return { state: 'recorded', record };
}

/** "edge-25.4.1 (linkerd2-proxy v2.290.0) from cr.l5d.io/linkerd/proxy:edge-25.4.1@sha256:…": one line for people. */
export function describeInstall(record: ProxyInstallRecord): string {
  const version = record.version || 'version unknown';
  const own = record.proxyVersion ? ` (linkerd2-proxy ${record.proxyVersion})` : '';
  return `${version}${own} from ${record.source} ${record.manifestDigest.slice(0, 19)}…, ${record.platform}`;
}

/** The version a harness reports for its proxy (hello, status): the record's, when it matches the binary. */
export function installedVersion(installed: InstalledProxy): string {
  return installed.state === 'recorded' ? installed.record.version : '';
}

/** The install as /status shows it (`detail.installed` of the proxy component). */
export interface InstallSummary {
  state: InstalledProxy['state'];
  version?: string;
  proxyVersion?: string;
  source?: string;
  manifestDigest?: string;
  platform?: string;
  installedAt?: string;
  reason?: string;
}

export function summarizeInstall(installed: InstalledProxy): InstallSummary {
  if (installed.state === 'unrecorded') return { state: installed.state };
  if (installed.state === 'unreadable') return { state: installed.state, reason: installed.reason };
  const { version, proxyVersion, source, manifestDigest, platform, installedAt } = installed.record;
  return {
    state: installed.state,
    version,
    ...(proxyVersion ? { proxyVersion } : {}),
    source,
    manifestDigest,
    platform,
    installedAt,
    ...(installed.state === 'changed' ? { reason: installed.reason } : {}),
  };
}

/**
 * How the installed proxy stands against the control plane's, in one line, and whether
 * it differs (a warning: the proxy still runs, but the VM is not on the cluster's release).
 */
export function compareWithControlPlane(installed: InstallSummary | undefined, controlPlaneVersion: string | undefined): { line: string; differs: boolean } {
  const cp = controlPlaneVersion ? `the control plane's is ${controlPlaneVersion}` : "the control plane's is not known (no running, registered harness, or linkerd-config names no proxy image)";
  if (!installed) return { line: `not known yet (read when the proxy starts); ${cp}`, differs: false };
  if (installed.state === 'unrecorded') return { line: `not installed by mesh-harness proxy install, so its version is unknown; ${cp}`, differs: false };
  if (installed.state === 'unreadable') return { line: `install record unreadable (${installed.reason}); ${cp}`, differs: false };
  if (installed.state === 'changed') return { line: `changed since mesh-harness proxy install recorded ${installed.version || 'it'} (${installed.reason}); ${cp}`, differs: false };
  const own = `${installed.version || 'version unknown'}${installed.proxyVersion ? ` (linkerd2-proxy ${installed.proxyVersion})` : ''}`;
  if (!controlPlaneVersion) return { line: `${own}; ${cp}`, differs: false };
  if (!installed.version) return { line: `${own}: the image had no tag or version label to compare; ${cp}`, differs: false };
  return installed.version === controlPlaneVersion
    ? { line: `${own}, the control plane's version`, differs: false }
    : { line: `${own}, but ${cp}`, differs: true };
}
