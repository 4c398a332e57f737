/**
 * The cluster facts every proxy needs (the default inbound policy and the cluster networks),
 * read from Linkerd's own `linkerd-config` ConfigMap so the VMs follow the cluster's
 * settings instead of a copy in the registrar's config that drifts.
 *
 * The ConfigMap's `values` key holds the control plane's Helm values as YAML:
 * `clusterNetworks` is one comma-separated string ("10.0.0.0/8,100.64.0.0/10,...") and the
 * policy is `proxy.defaultInboundPolicy` (Linkerd 2.12+). The proxy image the injector gives
 * pods is `proxy.image.name` with the tag `proxy.image.version`, which the chart leaves
 * empty to mean `linkerdVersion`; the harness installs the same one (`mesh-harness proxy
 * install`). Anyone able to edit that
 * ConfigMap could otherwise steer every VM's proxy, so it is untrusted input: bounded in
 * size, parsed without YAML tags, every field checked; when it is absent or invalid the
 * registrar's configured `proxy` values apply and the reason is logged once per change.
 */
import yaml from 'js-yaml';
import type { Logger } from '../log/logger.ts';
import { isTag, parseRepository, ReferenceError } from '../oci/reference.ts';
import { parseCidr } from '../util/cidr.ts';
import { INBOUND_POLICIES } from './config.ts';
import { LINKERD_CONFIG_NAME, type ConfigMap, type RegistrarStore } from './store.ts';

/** Linkerd's values are a few KiB; anything far larger is not a real linkerd-config. */
const MAX_VALUES_BYTES = 256 * 1024;
/** More networks than this is not a cluster's pod and service ranges; refuse rather than render a huge env. */
const MAX_NETWORKS = 64;

/** The control plane's proxy image: what pods get injected with. */
export interface ProxyImage {
  /** Repository, e.g. cr.l5d.io/linkerd/proxy. */
  name: string;
  /** Tag, e.g. edge-25.4.1 or stable-2.14.10. */
  version: string;
}

export interface ProxyFacts {
  defaultInboundPolicy: string;
  clusterNetworks: string[];
  /** Absent when linkerd-config does not name a usable one. */
  proxyImage?: ProxyImage;
}

/**
 * The facts, or why they cannot be used. The image is read on its own: a linkerd-config
 * whose policy is unusable may still say which proxy the cluster runs.
 */
export type ParsedFacts = { ok: true; facts: ProxyFacts } | { ok: false; reason: string; proxyImage?: ProxyImage };

/** The facts in a linkerd-config ConfigMap, or why they cannot be used. */
export function parseLinkerdConfig(configMap: ConfigMap | undefined): ParsedFacts {
  if (!configMap) return { ok: false, reason: `no ConfigMap ${LINKERD_CONFIG_NAME}` };
  const text = configMap.data?.['values'];
  if (typeof text !== 'string') return { ok: false, reason: `${LINKERD_CONFIG_NAME} has no "values" key` };
  if (Buffer.byteLength(text) > MAX_VALUES_BYTES) return { ok: false, reason: `${LINKERD_CONFIG_NAME} "values" is larger than ${MAX_VALUES_BYTES} bytes` };
  let values: unknown;
  try {
    // JSON_SCHEMA: plain data only (no timestamps, no merge keys' surprises, no custom tags).
    values = yaml.load(text, { schema: yaml.JSON_SCHEMA, json: true });
  } catch (err) {
    return { ok: false, reason: `${LINKERD_CONFIG_NAME} "values" is not YAML: ${(err as Error).message.split('\n')[0]}` };
  }
  if (!isObject(values)) return { ok: false, reason: `${LINKERD_CONFIG_NAME} "values" is not a YAML mapping` };

  const image = proxyImageOf(values);
  const refused = (reason: string): ParsedFacts => ({ ok: false, reason, ...(image.ok ? { proxyImage: image.image } : {}) });
  const proxy = values['proxy'];
  const policy = isObject(proxy) ? proxy['defaultInboundPolicy'] : undefined;
  if (typeof policy !== 'string' || !INBOUND_POLICIES.includes(policy)) {
    return refused(`${LINKERD_CONFIG_NAME} proxy.defaultInboundPolicy ${JSON.stringify(policy)} is not one of ${INBOUND_POLICIES.join(', ')}`);
  }
  const networks = values['clusterNetworks'];
  if (typeof networks !== 'string') return refused(`${LINKERD_CONFIG_NAME} clusterNetworks must be a comma-separated string of CIDRs`);
  const items = networks.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0 || items.length > MAX_NETWORKS) return refused(`${LINKERD_CONFIG_NAME} clusterNetworks must list 1 to ${MAX_NETWORKS} CIDRs`);
  const clusterNetworks: string[] = [];
  for (const item of items) {
    const cidr = item.includes('/') ? parseCidr(item) : undefined;
    if (!cidr) return refused(`${LINKERD_CONFIG_NAME} clusterNetworks: ${JSON.stringify(item.slice(0, 64))} is not a CIDR`);
    clusterNetworks.push(cidr.text);
  }
  return { ok: true, facts: { defaultInboundPolicy: policy, clusterNetworks, ...(image.ok ? { proxyImage: image.image } : {}) } };
}

/** `proxy.image.name` with `proxy.image.version`, or `linkerdVersion` when that is empty (the chart's default). */
export function proxyImageOf(values: Record<string, unknown>): { ok: true; image: ProxyImage } | { ok: false; reason: string } {
  const proxy = values['proxy'];
  const image = isObject(proxy) ? proxy['image'] : undefined;
  const name = isObject(image) ? image['name'] : undefined;
  if (typeof name !== 'string' || name === '') return { ok: false, reason: 'proxy.image.name is not set' };
  try {
    parseRepository(name);
  } catch (err) {
    if (!(err instanceof ReferenceError)) throw err;
    return { ok: false, reason: `proxy.image.name ${JSON.stringify(name.slice(0, 80))}: ${err.message}` };
  }
  const own = isObject(image) ? image['version'] : undefined;
  const version = typeof own === 'string' && own !== '' ? own : values['linkerdVersion'];
  const from = typeof own === 'string' && own !== '' ? 'proxy.image.version' : 'linkerdVersion';
  if (typeof version !== 'string' || !isTag(version)) return { ok: false, reason: `${from} ${JSON.stringify(typeof version === 'string' ? version.slice(0, 80) : version)} is not an image tag` };
  return { ok: true, image: { name, version } };
}

/** `name:version`, as `mesh-harness proxy install` pulls it. */
export function proxyImageReference(image: ProxyImage): string {
  return `${image.name}:${image.version}`;
}

function sameFacts(a: ProxyFacts, b: ProxyFacts): boolean {
  return a.defaultInboundPolicy === b.defaultInboundPolicy
    && a.clusterNetworks.join(',') === b.clusterNetworks.join(',')
    && (a.proxyImage && proxyImageReference(a.proxyImage)) === (b.proxyImage && proxyImageReference(b.proxyImage));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export interface ClusterFactsOptions {
  store: RegistrarStore;
  /** The registrar config's proxy values, used while linkerd-config is absent or invalid. */
  fallback: ProxyFacts;
  log: Logger;
  /** Called when the effective facts change (not on every ConfigMap event). */
  onChange(facts: ProxyFacts): void;
}

/** The effective facts, kept current from the store's watch of Linkerd's namespace. */
export class ClusterFacts {
  private facts: ProxyFacts;
  private source = '';
  private unsubscribe?: () => void;

  constructor(private readonly options: ClusterFactsOptions) {
    this.facts = options.fallback;
  }

  current(): ProxyFacts {
    return this.facts;
  }

  /** After the store synced: take the current ConfigMap, then follow its changes. */
  start(): void {
    this.refresh(false);
    this.unsubscribe = this.options.store.subscribe((event) => {
      if (event.kind === 'ConfigMap' && event.object.metadata.name === LINKERD_CONFIG_NAME) this.refresh(true);
    });
  }

  stop(): void {
    this.unsubscribe?.();
  }

  private refresh(notify: boolean): void {
    const parsed = parseLinkerdConfig(this.options.store.getLinkerdConfigMap());
    const next = parsed.ok ? parsed.facts : { ...this.options.fallback, ...(parsed.proxyImage ? { proxyImage: parsed.proxyImage } : {}) };
    const image = next.proxyImage ? proxyImageReference(next.proxyImage) : '';
    const source = `${parsed.ok ? LINKERD_CONFIG_NAME : `registrar config (${parsed.reason})`} ${image}`;
    if (source !== this.source) {
      const fields = { defaultInboundPolicy: next.defaultInboundPolicy, clusterNetworks: next.clusterNetworks.join(','), proxyImage: image || '(unknown)' };
      if (parsed.ok) this.options.log.info(fields, `cluster facts from ${LINKERD_CONFIG_NAME}`);
      else this.options.log.warn(fields, `cluster facts from the registrar config: ${parsed.reason}`);
      this.source = source;
    }
    const changed = !sameFacts(next, this.facts);
    this.facts = next;
    if (changed && notify) this.options.onChange(next);
  }
}
