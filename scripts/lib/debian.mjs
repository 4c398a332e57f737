// Debian 12 packages for a container's root filesystem, fetched by apt and unpacked by
// dpkg-deb, without installing anything on the build host and without changing its apt or
// dpkg state: apt runs with a private state directory (package lists, status, archives)
// under the cache, for any architecture (no `dpkg --add-architecture`), from the host's
// own Debian 12 mirrors (or the sources file in MESH_IMAGE_APT_SOURCES), verified against
// debian-archive-keyring. Downloaded .debs are kept by their archive file name and checked
// against the SHA256 of the signed package index every time they are used.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { BuildError } from './build-info.mjs';

export const DEBIAN_RELEASE = { codename: 'bookworm', version: '12' };
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** "Key: value" paragraphs (control files, apt-cache show), continuation lines joined. */
export function parseControl(text) {
  const fields = {};
  let last;
  for (const line of text.split('\n')) {
    if (/^\s/.test(line) && last) fields[last] += `\n${line}`;
    else {
      const m = /^([A-Za-z0-9-]+):\s?(.*)$/.exec(line);
      if (m) fields[(last = m[1])] = m[2];
    }
  }
  return fields;
}

/**
 * The host's Debian 12 repositories (main component) as one deb822 sources file, found
 * through `apt-get indextargets` so that whatever mirror or proxy the host uses applies.
 */
function hostDebianSources(arches) {
  let out;
  try {
    out = execFileSync('apt-get', ['indextargets', '--format', '$(ORIGIN)|$(CODENAME)|$(REPO_URI)|$(RELEASE)|$(COMPONENT)|$(TARGET_OF)'], { encoding: 'utf8' });
  } catch (error) {
    throw new BuildError(`apt-get indextargets failed (${error.message.split('\n')[0]}); set MESH_IMAGE_APT_SOURCES to a deb822 sources file for Debian ${DEBIAN_RELEASE.version}`, 69);
  }
  const repos = new Map();
  for (const line of out.split('\n')) {
    const [origin, codename, uri, release, component, targetOf] = line.split('|');
    if (origin !== 'Debian' || codename?.split('-')[0] !== DEBIAN_RELEASE.codename || component !== 'main' || targetOf !== 'deb') continue;
    if (!repos.has(uri)) repos.set(uri, new Set());
    repos.get(uri).add(release);
  }
  if (!repos.size) {
    throw new BuildError(`the host's apt sources have no Debian ${DEBIAN_RELEASE.version} (${DEBIAN_RELEASE.codename}) main repository; `
      + `set MESH_IMAGE_APT_SOURCES to a deb822 sources file for ${DEBIAN_RELEASE.codename}, ${DEBIAN_RELEASE.codename}-updates and ${DEBIAN_RELEASE.codename}-security`, 69);
  }
  if (!existsSync(KEYRING)) throw new BuildError(`${KEYRING} is missing: apt-get install debian-archive-keyring`, 69);
  return [...repos].sort(([a], [b]) => a.localeCompare(b)).map(([uri, releases]) => `Types: deb
URIs: ${uri}
Suites: ${[...releases].sort().join(' ')}
Components: main
Architectures: ${arches.join(' ')}
Targets: Packages
Signed-By: ${KEYRING}
`).join('\n');
}

export class DebianArchive {
  /**
   * @param {{ cacheDir: string, arches: string[], log?: (line: string) => void }} options
   */
  constructor({ cacheDir, arches, log = () => {} }) {
    this.dir = cacheDir;
    this.arches = arches;
    this.log = log;
    this.conf = join(cacheDir, 'apt.conf');
  }

  apt(tool, args, options = {}) {
    return execFileSync(tool, ['-c', this.conf, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options });
  }

  /** Writes the private apt configuration and refreshes its package lists. */
  update() {
    for (const tool of ['apt-get', 'apt-cache', 'dpkg-deb']) {
      try {
        execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
      } catch {
        throw new BuildError(`${tool} is missing: the image's base is taken from Debian packages, build on a Debian or Ubuntu host`, 69);
      }
    }
    const d = this.dir;
    for (const sub of ['state/lists/partial', 'cache/archives/partial', 'sources.list.d', 'preferences.d', 'debs']) mkdirSync(join(d, sub), { recursive: true });
    writeFileSync(join(d, 'state', 'status'), '');
    writeFileSync(join(d, 'sources.list'), '');
    writeFileSync(join(d, 'preferences'), '');
    const sources = process.env.MESH_IMAGE_APT_SOURCES ? readFileSync(process.env.MESH_IMAGE_APT_SOURCES, 'utf8') : hostDebianSources(this.arches);
    writeFileSync(join(d, 'sources.list.d', 'debian.sources'), sources);
    // Only the host's general apt settings (proxy, validity checks) still apply: sources,
    // pinning, lists, status and archives are all this directory's.
    writeFileSync(this.conf, `Dir::State "${d}/state";
Dir::State::Lists "${d}/state/lists";
Dir::State::status "${d}/state/status";
Dir::Cache "${d}/cache";
Dir::Cache::archives "${d}/cache/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Etc::SourceList "${d}/sources.list";
Dir::Etc::SourceParts "${d}/sources.list.d";
Dir::Etc::Preferences "${d}/preferences";
Dir::Etc::PreferencesParts "${d}/preferences.d";
APT::Architecture "${this.arches[0]}";
APT::Architectures { ${this.arches.map((a) => `"${a}";`).join(' ')} };
APT::Sandbox::User "root";
Acquire::Languages "none";
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
`);
    try {
      this.apt('apt-get', ['update', '-qq']);
    } catch (error) {
      const lists = readdirSync(join(d, 'state', 'lists')).filter((f) => f.endsWith('_Packages'));
      if (!lists.length) throw new BuildError(`apt-get update of the Debian ${DEBIAN_RELEASE.codename} package lists failed:\n${error.stderr || error.message}`, 69);
      this.log(`warning: apt-get update failed, using the package lists from the last update:\n${error.stderr || error.message}`);
    }
  }

  /**
   * One package for one architecture, the candidate version: the cached .deb when its SHA256
   * is the index's, else downloaded. Returns its file and identity.
   */
  fetch(name, arch) {
    // An Architecture: all package answers to name:all only (apt ties it to the native architecture).
    let show = '';
    for (const qualified of [`${name}:${arch}`, `${name}:all`]) {
      try {
        show = this.apt('apt-cache', ['show', '--no-all-versions', qualified]).trim();
      } catch (error) {
        throw new BuildError(`apt-cache show ${qualified} failed: ${(error.stderr || error.message).trim()}`);
      }
      if (show) break;
    }
    if (!show) throw new BuildError(`Debian package ${name} (${arch} or all) is not in the ${DEBIAN_RELEASE.codename} package lists`);
    const fields = parseControl(show.split('\n\n')[0]);
    const pkg = { name, version: fields.Version, architecture: fields.Architecture, sha256: fields.SHA256, source: (fields.Source ?? name).split(' ')[0] };
    if (!pkg.version || !/^[0-9a-f]{64}$/.test(pkg.sha256 ?? '')) throw new BuildError(`apt-cache show ${name}:${arch}: no Version or SHA256 in the package index`);
    const file = join(this.dir, 'debs', basename(fields.Filename));
    const digest = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');
    if (!existsSync(file) || digest(file) !== pkg.sha256) {
      const partial = join(this.dir, 'debs', '.partial');
      rmSync(partial, { recursive: true, force: true });
      mkdirSync(partial);
      try {
        this.apt('apt-get', ['download', '-qq', `${name}:${pkg.architecture}=${pkg.version}`], { cwd: partial });
      } catch (error) {
        throw new BuildError(`apt-get download ${name}:${pkg.architecture}=${pkg.version} failed: ${(error.stderr || error.message).trim()}`, 69);
      }
      const [got] = readdirSync(partial);
      if (!got || digest(join(partial, got)) !== pkg.sha256) throw new BuildError(`${name}:${arch}=${pkg.version}: the download does not match the index's SHA256 ${pkg.sha256}`);
      renameSync(join(partial, got), file);
      rmSync(partial, { recursive: true, force: true });
      this.log(`downloaded ${basename(file)}`);
    }
    return { ...pkg, file };
  }
}

/** Unpacks a .deb's files into `dir` (dpkg-deb -x, no maintainer scripts); returns its control fields. */
export function unpackDeb(file, dir) {
  mkdirSync(dir, { recursive: true });
  execFileSync('dpkg-deb', ['-x', file, dir]);
  return execFileSync('dpkg-deb', ['-f', file], { encoding: 'utf8' });
}
