import type { HarnessConfig } from '../config/types.ts';
import type { Logger } from '../log/logger.ts';
import { BaseComponent } from '../component/component.ts';

/**
 * The configuration as a component, so /status shows which file is in force and why the
 * last reload was rejected. A rejected reload never makes the harness unready: the
 * previous configuration keeps running.
 */
export class ConfigState extends BaseComponent {
  private config: HarnessConfig;

  constructor(initial: HarnessConfig, private readonly source: string, log: Logger) {
    super('config', log);
    this.config = initial;
    this.setState('Ready', { message: `loaded from ${source}` });
  }

  get current(): HarnessConfig {
    return this.config;
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {}

  accepted(config: HarnessConfig): void {
    this.config = config;
    this.setState('Ready', { message: `reloaded from ${this.source} at ${new Date().toISOString()}`, lastError: undefined });
  }

  /** A component cannot apply the new configuration on this host; nothing changed. */
  refused(component: string, problems: string[]): void {
    this.log.error({ refusedBy: component, problems }, `configuration reload refused by ${component}; no component changed, still running the previous configuration`);
    this.setState('Ready', { message: `reload refused by ${component}: running the previous configuration`, lastError: problems.map((p) => `${component}: ${p}`).join('; ') });
  }

  /** Accepted, but a component failed while applying it; its own state says what it retries. */
  partlyApplied(failures: string[]): void {
    this.setState('Ready', { message: `reloaded from ${this.source}, but not every component applied it`, lastError: failures.join('; ') });
  }

  rejected(problems: string[]): void {
    this.log.error({ problems }, 'configuration reload rejected; still running the previous configuration');
    this.setState('Ready', { message: 'reload rejected: running the previous configuration', lastError: problems.join('; ') });
  }
}
