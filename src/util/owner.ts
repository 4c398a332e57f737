/**
 * A directory recorded as one process's, so that a later process can tell it was
 * abandoned: its owner was SIGKILLed (or the machine lost power) before it could remove it.
 * The record holds the PID and that process's start time, so a reused PID does not count
 * as the owner.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { processStartTime } from './netns.ts';

const OWNER_FILE = 'owner.json';

export interface Owner {
  pid: number;
  startTime: string;
}

/** Records this process as the owner of `dir`. */
export function recordOwner(dir: string): void {
  const owner: Owner = { pid: process.pid, startTime: processStartTime(process.pid) ?? '' };
  writeFileSync(join(dir, OWNER_FILE), JSON.stringify(owner), { mode: 0o644 });
}

/** The owner recorded in `dir`, or undefined when there is no readable record. */
export function readOwner(dir: string): Owner | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8')) as Owner;
  } catch {
    return undefined;
  }
}

export function ownerAlive(owner: Owner): boolean {
  return processStartTime(owner.pid) === owner.startTime;
}
