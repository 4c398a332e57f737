import { performance } from 'node:perf_hooks';
import { ConfigError } from '../../util/errors.ts';
import { CHECK_BUDGET_MS, runChecks, type Area, type CheckResult } from '../../check/check.ts';
import type { ConfigLoad } from '../../check/config.ts';
import { systemEffects } from '../../check/effects.ts';
import { planChecks } from '../../check/plan.ts';
import { renderAreaHeading, renderResult, renderSummary, reportJson } from '../../check/render.ts';
import { parseDuration } from '../../util/duration.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { configOptions, parseCommandArgs, write, type Command } from '../command.ts';
import { loadCommandConfig } from '../command-config.ts';

export const checkCommand: Command = {
  name: 'check',
  usage: 'mesh-harness check [--config PATH] [--set section.key=value] [--output table|json] [--timeout 5s]',
  async run(args, io) {
    const { values } = parseCommandArgs(this, args, { ...configOptions, output: { type: 'string', short: 'o', default: 'table' }, timeout: { type: 'string' } });
    if (values.output !== 'table' && values.output !== 'json') throw new CliError(`mesh-harness check: --output must be table or json, got "${values.output}"\nusage: ${this.usage}`, EXIT.USAGE);
    const budgetMs = values.timeout === undefined ? CHECK_BUDGET_MS : parseDuration(values.timeout);
    if (budgetMs === undefined || budgetMs < 1000) throw new CliError(`mesh-harness check: --timeout must be a duration of at least 1s, such as 5s or 30s; got "${values.timeout}"\nusage: ${this.usage}`, EXIT.USAGE);

    let load: ConfigLoad;
    try {
      load = { ok: true, loaded: loadCommandConfig(values, io) };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      load = { ok: false, problems: err.problems };
    }

    const started = performance.now();
    // A longer bound (slow links, loaded hosts) stretches every check's deadline alike.
    const pending = runChecks(planChecks(load, systemEffects({ env: io.env }), budgetMs / CHECK_BUDGET_MS), { budgetMs });
    const results: CheckResult[] = [];
    const style = (io.stdout as NodeJS.WriteStream).isTTY && io.env.TERM !== 'dumb' ? 'unicode' : 'ascii';
    let area: Area | undefined;
    // Printed in plan order as each is done, so a slow network check holds back only what follows it.
    for (const next of pending) {
      for (const result of await next) {
        results.push(result);
        if (values.output !== 'table') continue;
        if (result.area !== area) {
          write(io.stdout, `${area === undefined ? '' : '\n'}${renderAreaHeading(result.area)}`);
          area = result.area;
        }
        write(io.stdout, renderResult(result, style));
      }
    }
    const elapsed = performance.now() - started;
    if (values.output === 'json') write(io.stdout, JSON.stringify(reportJson(results, elapsed), null, 2));
    else write(io.stdout, `\n${renderSummary(results, style, elapsed)}`);
    return results.some((r) => r.verdict === 'fail') ? EXIT.FAILURE : EXIT.OK;
  },
};
