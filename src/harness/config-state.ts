import type { HarnessConfig } from '../config/types.ts';
import type { Logger } from '../log/logger.ts';
import { BaseComponent } from './component.ts';

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

  rejected(problems: string[]): void {
    this.log.error({ problems }, 'configuration reload rejected; still running the previous configuration');
    this.setState('Ready', { message: 'reload rejected: running the previous configuration', lastError: problems.join('; ') });
  }
}
