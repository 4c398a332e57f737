/**
 * The control plane's proxy image as the registrar sends it (ProxySettings image_name and
 * image_version) and as the running harness shows it in /status: `detail.controlPlaneProxy`
 * of the registration component. `proxy install` pulls it by default; `status` and
 * `check` compare the installed proxy with it. A leaf module: the CLI reads /status
 * without loading the gRPC client.
 */
import { isTag, parseRepository, ReferenceError } from '../oci/reference.ts';

export interface ControlPlaneProxy {
  /** Repository, e.g. cr.l5d.io/linkerd/proxy. */
  name: string;
  /** Tag: the cluster's Linkerd version, e.g. edge-25.4.1. */
  version: string;
  /** name:version. */
  image: string;
}

/** The image from the registrar's two fields, or undefined when either is empty or not an image name/tag. */
export function controlPlaneProxy(name: string, version: string): ControlPlaneProxy | undefined {
  if (!name || !version || !isTag(version)) return undefined;
  try {
    parseRepository(name);
  } catch (err) {
    if (err instanceof ReferenceError) return undefined;
    throw err;
  }
  return { name, version, image: `${name}:${version}` };
}

/** `detail.controlPlaneProxy` of a /status registration component, checked (it crossed a socket). */
export function controlPlaneProxyIn(components: ReadonlyArray<{ name: string; detail?: Record<string, unknown> }>): ControlPlaneProxy | undefined {
  const shown = components.find((c) => c.name === 'registration')?.detail?.['controlPlaneProxy'] as Partial<ControlPlaneProxy> | undefined;
  return shown && typeof shown.name === 'string' && typeof shown.version === 'string' ? controlPlaneProxy(shown.name, shown.version) : undefined;
}
