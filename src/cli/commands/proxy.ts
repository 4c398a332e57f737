import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { adminClientHost, fetchAdminStatus } from '../../admin/client.ts';
import { readTrustAnchorsPem } from '../../config/host-checks.ts';
import { requiredForRun } from '../../config/schema.ts';
import type { HarnessConfig } from '../../config/types.ts';
import { credentialsFor, type RegistryCredentials } from '../../oci/credentials.ts';
import { OciError } from '../../oci/errors.ts';
import { formatPlatform, hostPlatform, parsePlatform, samePlatform } from '../../oci/manifest.ts';
import { formatReference, parseReference, ReferenceError } from '../../oci/reference.ts';
import { controlPlaneProxyIn } from '../../protocol/proxy-image.ts';
import { formatEnvFile, renderProxyEnv } from '../../proxy/env.ts';
import { DEFAULT_PROXY_BINARY, describeInstall, installRecordPath } from '../../proxy/install-record.ts';
import { installProxy, type ProxyImageSource } from '../../proxy/install.ts';
import { findExecutable } from '../../supervisor/which.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { configOptions, parseCommandArgs, write, type Command, type CommandIo } from '../command.ts';
import { loadCommandConfig } from '../command-config.ts';

const ENV_USAGE = 'mesh-harness proxy env [--config PATH] [--set section.key=value ...]';
const INSTALL_USAGE = 'mesh-harness proxy install [--image REF | --from FILE] [--pull-secret FILE] [--arch ARCH] [--dest DIR] [--plain-http] [--force] [--config PATH]';

async function env(args: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs({ name: 'proxy env', usage: ENV_USAGE }, args, { ...configOptions });
  // The same configuration, decisions and trust anchors `run` gives the proxy, so running
  // the proxy by hand with this file reproduces what the harness does.
  const { config } = loadCommandConfig(values, io, { require: requiredForRun, requiredBy: 'mesh-harness proxy env' });
  const trustAnchorsPem = readTrustAnchorsPem(config.identity.trustAnchorsFile);
  io.stdout.write(formatEnvFile(renderProxyEnv(config, { workloadName: '', trustAnchorsPem })));
  return EXIT.OK;
}

/** The control plane's proxy image, as the running harness heard it from the registrar. */
async function controlPlaneImage(config: HarnessConfig): Promise<string> {
  const host = adminClientHost(config.admin);
  const pass = "pass --image cr.l5d.io/linkerd/proxy:<the cluster's Linkerd version> (linkerd version shows it as the server version)";
  let components;
  try {
    components = (await fetchAdminStatus(host, config.admin.port, 3000)).components;
  } catch (err) {
    throw new CliError(`mesh-harness proxy install: no --image, and the control plane's proxy image is learnt from the running harness, but none answers on ${host}:${config.admin.port} (${(err as Error).message}); start it (it registers without a proxy) or ${pass}`, EXIT.UNAVAILABLE);
  }
  const image = controlPlaneProxyIn(components)?.image;
  if (image) return image;
  const registration = components.find((c) => c.name === 'registration');
  const why = !registration
    ? 'the running harness does not register (control.registrarAddress is empty)'
    : registration.ready
      ? "the registrar did not send one (its linkerd-config has no proxy.image.name, or the registrar is older)"
      : `the harness is not registered yet (${registration.phase}: ${registration.message})`;
  throw new CliError(`mesh-harness proxy install: no --image, and the control plane's proxy image is not known: ${why}; ${pass}`, EXIT.UNAVAILABLE);
}

function readPullSecret(path: string, registry: string, io: CommandIo): RegistryCredentials | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`mesh-harness proxy install: cannot read the pull secret ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, EXIT.USAGE);
  }
  if (statSync(path).mode & 0o077) write(io.stderr, `mesh-harness proxy install: warning: the pull secret ${path} is readable by group or others; it is a credential: chmod 600 ${path}`);
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new CliError(`mesh-harness proxy install: the pull secret ${path} is not JSON (${(err as Error).message}); it must be a Docker config.json`, EXIT.USAGE);
  }
  const credentials = credentialsFor(config, registry, path);
  if (!credentials) write(io.stderr, `mesh-harness proxy install: warning: ${path} has no credentials for ${registry}; pulling anonymously`);
  return credentials;
}

async function install(args: string[], io: CommandIo): Promise<number> {
  const command = { name: 'proxy install', usage: INSTALL_USAGE };
  const { values } = parseCommandArgs(command, args, {
    ...configOptions,
    image: { type: 'string' },
    from: { type: 'string' },
    'pull-secret': { type: 'string' },
    arch: { type: 'string' },
    dest: { type: 'string' },
    'plain-http': { type: 'boolean' },
    force: { type: 'boolean' },
  });
  const usage = (message: string) => new CliError(`mesh-harness proxy install: ${message}\nusage: ${INSTALL_USAGE}`, EXIT.USAGE);
  if (values.image !== undefined && values.from !== undefined) throw usage('--image and --from name two sources; give one');
  if (values.from !== undefined && (values['pull-secret'] !== undefined || values['plain-http'])) throw usage('--pull-secret and --plain-http are for a registry, not for --from');
  const { config } = loadCommandConfig(values, io);

  const host = hostPlatform();
  let platform = host;
  try {
    if (values.arch !== undefined) platform = parsePlatform(values.arch);
  } catch (err) {
    throw usage((err as Error).message);
  }
  if (!samePlatform(platform, host) && values.dest === undefined) {
    throw usage(`--arch ${formatPlatform(platform)} is not this machine's (${formatPlatform(host)}); a binary for another machine goes elsewhere: add --dest DIR`);
  }
  const configured = findExecutable(config.proxy.binary, io.env.PATH) ?? config.proxy.binary;
  const destination = values.dest !== undefined ? join(resolve(values.dest), 'linkerd2-proxy') : isAbsolute(configured) ? configured : DEFAULT_PROXY_BINARY;

  let source: ProxyImageSource;
  if (values.from !== undefined) {
    source = { kind: 'oci-layout', path: resolve(values.from) };
    write(io.stdout, `installing linkerd2-proxy for ${formatPlatform(platform)} from ${source.path}`);
  } else {
    const text = values.image ?? (await controlPlaneImage(config));
    let reference;
    try {
      reference = parseReference(text);
    } catch (err) {
      if (err instanceof ReferenceError) throw usage(`--image ${JSON.stringify(text)}: ${err.message}`);
      throw err;
    }
    const credentials = values['pull-secret'] !== undefined ? readPullSecret(values['pull-secret'], reference.registry, io) : undefined;
    source = { kind: 'registry', reference, text, ...(credentials ? { credentials } : {}), ...(values['plain-http'] ? { plainHttp: true } : {}) };
    write(io.stdout, `installing linkerd2-proxy for ${formatPlatform(platform)} from ${formatReference(reference)}${values.image === undefined ? " (the control plane's proxy, as the registrar sent it)" : ''}`);
  }

  // Ctrl-C or a stop mid-pull removes what was written so far and leaves the installed proxy as it was.
  const abort = new AbortController();
  const interrupt = () => abort.abort();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    const { record, installed } = await installProxy({ source, destination, platform, signal: abort.signal, force: values.force === true, progress: (line) => write(io.stdout, `  ${line}`) });
    if (!installed) {
      write(io.stdout, `already installed ${destination}: ${describeInstall(record)}; sha256 ${record.sha256} checked; nothing written (--force reinstalls)`);
      return EXIT.OK;
    }
    write(io.stdout, `installed ${destination}: ${describeInstall(record)}; sha256 ${record.sha256}; recorded in ${installRecordPath(destination)}`);
  } catch (err) {
    if (abort.signal.aborted) throw new CliError('mesh-harness proxy install: interrupted; the installed proxy is unchanged', EXIT.FAILURE);
    if (err instanceof OciError) throw new CliError(`mesh-harness proxy install: ${err.message}`, err.exitCode);
    throw err;
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
  if (destination !== configured) {
    write(io.stdout, values.dest !== undefined && !samePlatform(platform, host)
      ? `note: a ${formatPlatform(platform)} binary, for another machine; this machine's harness runs ${configured}`
      : `note: the harness runs proxy.binary ${configured}, not ${destination}: set proxy.binary to ${destination} to use it`);
  } else {
    write(io.stdout, 'a running harness starts this proxy at its next proxy start; systemctl restart mesh-harness switches now');
  }
  return EXIT.OK;
}

export const proxyCommand: Command = {
  name: 'proxy',
  usage: `${ENV_USAGE}\n       ${INSTALL_USAGE}`,
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub === 'env') return env(rest, io);
    if (sub === 'install') return install(rest, io);
    throw new CliError(`mesh-harness proxy: expected "env" or "install"${sub ? `, got ${JSON.stringify(sub.slice(0, 40))}` : ''}\nusage: ${this.usage}`, EXIT.USAGE);
  },
};
