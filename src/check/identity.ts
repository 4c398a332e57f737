/**
 * Identity area: the trust anchors, the SVID the Workload API serves to the daemon's
 * group, its chain, its remaining lifetime and the local clock against its validity.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { HarnessConfig } from '../config/types.ts';
import { distinguishedName, verifySvid } from '../identity/verify.ts';
import type { X509Svid } from '../identity/workload-api-client.ts';
import { formatDuration } from '../util/duration.ts';
import { fail, ok, skip, warn, type Check, type Outcome } from './check.ts';
import type { Facts } from './facts.ts';

const DAY_MS = 86_400_000;
/** A trust anchor closer than this to its end gets a warning: rotating it takes planning. */
const ANCHOR_WARN_MS = 30 * DAY_MS;
/**
 * SPIRE agents renew an SVID at half its lifetime; one served further into its lifetime
 * than this means a clock ahead of the SPIRE server's, or an agent that stopped renewing.
 */
const LATE_IN_LIFETIME = 0.75;

/** Whole units, as people read a remaining time. */
export function humanDuration(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 2 * 86_400) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

export function identityChecks(config: HarnessConfig, facts: Facts): Check[] {
  const id = config.identity.spiffeId;
  const anchorsFile = config.identity.trustAnchorsFile;
  const noId = async (): Promise<Outcome> => skip('identity.spiffeId is not set');

  /** The SVID for our ID, or why a check built on it is skipped. */
  const ourSvid = async (): Promise<X509Svid | Outcome> => {
    if (!id) return skip('identity.spiffeId is not set');
    const svid = await facts.svid().catch(() => undefined);
    return svid ?? skip(`no SVID for ${id}; see the Workload API check`);
  };

  return [
    {
      id: 'identity.trust-anchors',
      area: 'identity',
      name: `trust anchors (identity.trustAnchorsFile) are readable CA certificates`,
      timeoutMs: 1000,
      timeoutHint: 'reading a local file took too long; is it on a hung network file system?',
      async run() {
        let anchors;
        try {
          anchors = await facts.anchors();
        } catch (err) {
          return fail((err as Error).message, `write the Linkerd trust anchor (the identity trust root, as given to linkerd install --identity-trust-anchors-file) in PEM to ${anchorsFile}, or set identity.trustAnchorsFile`);
        }
        const now = facts.effects.now();
        const expired = anchors.find((a) => new Date(a.validTo) < now);
        if (expired) return fail(`${anchorsFile}: ${distinguishedName(expired.subject)} expired at ${new Date(expired.validTo).toISOString()}`, 'the mesh trust anchor must be rotated (Linkerd docs: "Rotating the identity trust anchor"); then update this file');
        const soon = anchors.find((a) => new Date(a.validTo).getTime() - now.getTime() < ANCHOR_WARN_MS);
        const summary = `${anchorsFile}: ${anchors.map((a) => `${distinguishedName(a.subject)} (until ${new Date(a.validTo).toISOString().slice(0, 10)})`).join('; ')}`;
        if (soon) return warn(`${summary}; ${distinguishedName(soon.subject)} expires in ${humanDuration(new Date(soon.validTo).getTime() - now.getTime())}`, 'plan the trust anchor rotation now (Linkerd docs: "Rotating the identity trust anchor")');
        return ok(summary);
      },
    },
    {
      id: 'identity.svid',
      area: 'identity',
      name: `the Workload API (identity.workloadApiSocket) serves an SVID for ${id || 'identity.spiffeId'}`,
      timeoutMs: 3500,
      timeoutHint: 'the SPIRE agent accepted the connection but did not answer; check it with spire-agent healthcheck and its logs',
      async run() {
        if (!id) return noId();
        let socketPath: string;
        try {
          socketPath = facts.socketPath();
        } catch (err) {
          return fail((err as Error).message, 'set identity.workloadApiSocket to the socket_path of the SPIRE agent');
        }
        let fetched;
        try {
          fetched = await facts.svids();
        } catch (err) {
          return fail((err as Error).message, svidFetchHint(err as Error & { code?: unknown }, id, await groupSelector(facts)));
        }
        const asked = fetched.gid !== undefined ? `, asked as gid ${fetched.gid} (proxy.group) as the daemon does` : '';
        const svid = fetched.svids.find((s) => s.spiffeId === id);
        if (!svid) {
          return fail(
            `${socketPath} serves ${fetched.svids.map((s) => s.spiffeId).join(', ') || 'no SVID'} but not ${id}${asked}`,
            `the SPIRE registration entry for this machine must have -spiffeID ${id} (or identity.spiffeId must be one of the IDs served)`,
          );
        }
        return ok(`serial ${svid.chain[0]!.serialNumber} from ${socketPath}${asked}`);
      },
    },
    {
      id: 'identity.chain',
      area: 'identity',
      name: 'the SVID chain verifies against the trust anchors',
      timeoutMs: 4000,
      timeoutHint: 'the SVID did not arrive in time; see the Workload API check',
      async run() {
        const svid = await ourSvid();
        if (!('chain' in svid)) return svid;
        const anchors = await facts.anchors().catch(() => undefined);
        if (!anchors) return skip('no usable trust anchors; see the trust anchors check');
        const verdict = verifySvid(svid, { anchors, expectedId: id, now: facts.effects.now(), anchorsSource: anchorsFile });
        if (verdict.ok) return ok(`issued by ${distinguishedName(svid.chain[svid.chain.length - 1]!.issuer)}, chains to ${anchorsFile}`);
        return fail(
          verdict.reason,
          `either ${anchorsFile} holds the wrong anchor (it must be the Linkerd identity trust anchor), or the SPIRE server does not sign with an UpstreamAuthority chaining to it (docs/identity.md)`,
        );
      },
    },
    {
      id: 'identity.expiry',
      area: 'identity',
      name: 'the SVID is not about to expire',
      timeoutMs: 4000,
      timeoutHint: 'the SVID did not arrive in time; see the Workload API check',
      async run() {
        const svid = await ourSvid();
        if (!('chain' in svid)) return svid;
        const notAfter = new Date(svid.chain[0]!.validTo);
        const left = notAfter.getTime() - facts.effects.now().getTime();
        const margin = config.identity.expiryMargin;
        const renew = 'the SPIRE agent is not renewing it: check its logs and its connection to the SPIRE server (spire-agent healthcheck)';
        if (left <= 0) return fail(`expired ${humanDuration(left)} ago, at ${notAfter.toISOString()}`, renew);
        if (left <= margin) return fail(`expires in ${humanDuration(left)} (${notAfter.toISOString()}), within identity.expiryMargin (${formatDuration(margin)}): the harness reports not ready`, renew);
        return ok(`expires in ${humanDuration(left)} (${notAfter.toISOString()})`);
      },
    },
    {
      id: 'identity.clock',
      area: 'identity',
      name: "the local clock agrees with the SVID's validity",
      timeoutMs: 4000,
      timeoutHint: 'the SVID did not arrive in time; see the Workload API check',
      async run() {
        const svid = await ourSvid();
        if (!('chain' in svid)) return svid;
        const leaf = svid.chain[0]!;
        const notBefore = new Date(leaf.validFrom).getTime();
        const notAfter = new Date(leaf.validTo).getTime();
        const now = facts.effects.now();
        const sync = 'synchronise the clock (timedatectl status; chrony or systemd-timesyncd), here and on the SPIRE server';
        if (now.getTime() < notBefore) return fail(`the local clock (${now.toISOString()}) is ${humanDuration(notBefore - now.getTime())} before the SVID's notBefore (${new Date(notBefore).toISOString()}): it is behind the SPIRE server's`, sync);
        if (now.getTime() > notAfter) return fail(`the local clock (${now.toISOString()}) is past the SVID's notAfter (${new Date(notAfter).toISOString()}): it is ahead of the SPIRE server's, or the agent serves an expired SVID`, sync);
        const used = (now.getTime() - notBefore) / (notAfter - notBefore);
        if (used > LATE_IN_LIFETIME) {
          return warn(`the SVID served is ${Math.round(used * 100)}% through its lifetime; agents renew at 50%, so this clock may be ahead of the SPIRE server's or the agent stopped renewing`, sync);
        }
        return ok(`${now.toISOString()} is inside ${new Date(notBefore).toISOString()} .. ${new Date(notAfter).toISOString()}`);
      },
    },
  ];
}

async function groupSelector(facts: Facts): Promise<string> {
  const group = await facts.proxyGroup().catch(() => undefined);
  // By name: the same on every host, where a gid is whatever groupadd picked there.
  const configured = facts.config.proxy.group;
  return `unix:group:${group?.name ?? (/^\d+$/.test(configured) ? `<name of group ${configured}>` : configured)}`;
}

function svidFetchHint(err: Error & { code?: unknown }, id: string, selector: string): string {
  if (err.code === GrpcStatus.PERMISSION_DENIED) {
    return `create the registration entry: spire-server entry create -parentID <this agent's SPIFFE ID> -spiffeID ${id} -selector ${selector}`;
  }
  if (err.code === GrpcStatus.UNAVAILABLE) {
    return 'start spire-agent (systemctl status spire-agent, or spire.mode managed), or set identity.workloadApiSocket to its socket_path';
  }
  return 'check the SPIRE agent: spire-agent healthcheck -socketPath <socket>, and its logs';
}
