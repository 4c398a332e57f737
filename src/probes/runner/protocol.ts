/**
 * The probe runner's protocol: JSON lines over its stdin (requests from the harness) and
 * stdout (replies). The runner runs as an unprivileged account, so its replies are read
 * like any untrusted input: checked field by field, the message cut to a bounded length.
 */
import { truncate } from '../result.ts';
import type { NetworkCheck } from '../network.ts';

export type RunnerRequest = { id: number; check: NetworkCheck; timeoutMs: number } | { cancel: number };

/** The runner's first line says it is up and which credentials it really holds. */
export type RunnerReply =
  | { ready: true; uid: number; gid: number; groups: number[] }
  | { id: number; ok: boolean; latencyMs: number; message: string };

/** Longest message kept from a reply; a check's own messages are far shorter. */
export const MAX_REPLY_MESSAGE_CHARS = 1000;

function isId(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** A reply line from the runner, or undefined when it is not one. */
export function parseReply(text: string): RunnerReply | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const reply = value as Record<string, unknown>;
  if (reply.ready === true) {
    if (!isId(reply.uid) || !isId(reply.gid) || !Array.isArray(reply.groups) || !reply.groups.every(isId)) return undefined;
    return { ready: true, uid: reply.uid, gid: reply.gid, groups: [...reply.groups] };
  }
  if (!isId(reply.id) || typeof reply.ok !== 'boolean' || typeof reply.message !== 'string') return undefined;
  const latencyMs = typeof reply.latencyMs === 'number' && Number.isFinite(reply.latencyMs) && reply.latencyMs >= 0 ? Math.round(reply.latencyMs) : 0;
  return { id: reply.id, ok: reply.ok, latencyMs, message: truncate(reply.message, MAX_REPLY_MESSAGE_CHARS) };
}
