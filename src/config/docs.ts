import { formatFor } from './formats.ts';
import { envVarFor, requiredForRun, schemaFields, schemaSections, type FieldSpec } from './schema.ts';
import { formatDuration } from '../util/duration.ts';

const SECTION_INTRO: Record<string, string> = {
  workload: 'What this machine is in the mesh: its group, namespace, name, addresses and ports.',
  identity: 'The SPIFFE identity the machine must hold, and where the SVID comes from.',
  spire: 'Whether the harness runs spire-agent itself (`managed`) or uses one that is already running (`external`).',
  proxy: 'The linkerd2-proxy child: binary, user, ports, control plane addresses.',
  iptables: 'Transparent redirection of the workload\'s TCP traffic through the proxy.',
  control: 'Registration with mesh-registrar in the cluster.',
  probes: 'Probes of the local workload; their results feed the ExternalWorkload Ready condition.',
  admin: 'The harness admin API (`/live`, `/ready`, `/status`, `/metrics`).',
  log: 'Harness logging.',
};

function formatDefault(value: unknown, format: unknown): string {
  if (format === 'duration' && typeof value === 'number') return formatDuration(value);
  return JSON.stringify(value);
}

/** What a field accepts, in the words of its format (formats.ts), so the docs cannot drift from the code. */
function formatAllowed(format: FieldSpec['format']): string {
  return formatFor(format).summary;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** docs/configuration.md, generated from the schema so the two can never drift. */
export function renderConfigurationDoc(): string {
  const lines = [
    '<!-- Generated from src/config/schema.ts by `npm run docs`. Do not edit by hand. -->',
    '# Configuration reference',
    '',
    'mesh-harness reads `/etc/mesh-harness/config.json` (or the file given with `--config`).',
    'Each value is taken from the first of these that sets it:',
    '',
    '1. a flag: `--set section.key=value` (lists as `a,b` or JSON, objects as JSON);',
    '2. an environment variable `MESH_HARNESS_<SECTION>_<KEY>` (named in the tables below);',
    '3. the config file;',
    '4. the default.',
    '',
    'Unknown keys are errors, and so are unknown `MESH_HARNESS_*` variables (a warning).',
    'Durations need a unit: `100ms`, `10s`, `5m`, `1h` (a bare `30` is refused). A list is',
    'always a list: `[8080]`, not `8080`. The file must be a regular file of at most 1 MiB',
    'holding one JSON object, nested at most 64 levels.',
    '',
    'Only root may be able to change the file: it decides what runs as root and what the',
    'cluster may make the machine do. `mesh-harness run` (and every reload) refuses a file',
    'not owned by root, writable by group or others, or in a directory others could write',
    '(exit 78, naming the fix: `chown root:root PATH && chmod go-w PATH`); `config validate`',
    'only warns, as it checks files before they are installed.',
    '',
    '`mesh-harness config validate [PATH]` checks a file as `mesh-harness run` does before',
    'it starts (the schema, the settings run requires, and on this host the accounts, the',
    'trust anchors and the programs) and lists every problem, one per line, each naming the',
    'field, the value and what is allowed (exit code 78). `--file-only` leaves the host out,',
    'for a file checked on another machine or before the package is installed.',
    '`mesh-harness config show` prints the effective value of every field and where it came',
    'from; `mesh-harness proxy env` prints the environment the proxy would get.',
    '',
    'Fields marked "required by run" may stay empty for the `iptables`, `check` and',
    '`config show` commands; `mesh-harness run` (and so `config validate`) refuses them empty.',
    '',
  ];
  const required = new Set<string>(requiredForRun);
  for (const section of Object.keys(schemaSections)) {
    lines.push(`## \`${section}\``, '', SECTION_INTRO[section] ?? '', '', '| key | default | allowed | environment | description |', '| --- | --- | --- | --- | --- |');
    for (const [path, spec] of schemaFields().filter(([p]) => p.startsWith(`${section}.`))) {
      const def = spec.docDefault ?? formatDefault(spec.default, spec.format);
      const doc = required.has(path) ? `**Required by run.** ${spec.doc}` : spec.doc;
      lines.push(`| \`${path}\` | ${cell(def.startsWith('"') || def.startsWith('[') || def.startsWith('{') || /^\d/.test(def) || def === 'true' || def === 'false' ? `\`${def}\`` : def)} | ${cell(formatAllowed(spec.format))} | \`${envVarFor(path)}\` | ${cell(doc)} |`);
    }
    lines.push('');
  }
  return `${lines.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}
