// The ExecStopPost decision: rules may outlive the harness only across a clean restart.
import t from 'tap';
import { jobTypes, stopOutcome } from '../../../src/systemd/stop-post.ts';

const UNIT = 'mesh-harness.service';

t.test('jobTypes reads systemctl list-jobs --plain for one unit', async (t) => {
  const listed = ['  731 mesh-harness.service restart running', '  732 spire-agent.service start waiting', ''].join('\n');
  t.same(jobTypes(listed, UNIT), ['restart']);
  t.same(jobTypes('', UNIT), [], 'no jobs');
  t.same(jobTypes('  12 mesh-harness.service.d stop running\n', UNIT), [], 'another unit whose name starts the same');
});

t.test('only a clean stop by a restart job keeps the rules', async (t) => {
  t.match(stopOutcome('success', ['restart'], UNIT), { keep: true, reason: /stopped cleanly and is being restarted/ });
  t.match(stopOutcome('success', ['stop'], UNIT), { keep: false, reason: /not being restarted/ }, 'systemctl stop');
  t.match(stopOutcome('success', [], UNIT), { keep: false }, 'no job: the process exited by itself');
  for (const result of ['exit-code', 'signal', 'core-dump', 'watchdog', 'timeout', 'start-limit-hit', 'resources']) {
    t.match(stopOutcome(result, ['restart'], UNIT), { keep: false, reason: new RegExp(`result "${result}"`) }, `${result}: removed even when a restart follows`);
  }
  t.match(stopOutcome(undefined, ['restart'], UNIT), { keep: false, reason: /not run as mesh-harness.service's ExecStopPost/ });
});
