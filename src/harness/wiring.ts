import type { HarnessMetrics } from '../admin/metrics.ts';
import type { HarnessConfig } from '../config/types.ts';
import type { Logger } from '../log/logger.ts';
import type { Component } from './component.ts';

export interface WiringContext {
  config: HarnessConfig;
  log: Logger;
  metrics: HarnessMetrics;
}

/** The daemon's components in start order. */
export async function buildComponents(_context: WiringContext): Promise<Component[]> {
  return [];
}
