/**
 * The typed, parsed harness configuration. The type is derived from the schema, so a field
 * added there has its type here at once: each format in formats.ts names what it parses into
 * (ports as numbers, port ranges and subnets parsed, durations in milliseconds).
 */
import type { FormatType } from './formats.ts';
import type { HostDecisions } from './host.ts';
import type { schemaSections } from './schema.ts';

export type { Cidr, PortRange, ProbeSpec, WorkloadPort } from './formats.ts';

type Schema = typeof schemaSections;

/** Exactly what the schema declares, parsed. */
export type SchemaConfig = {
  -readonly [S in keyof Schema]: { -readonly [K in keyof Schema[S]]: Schema[S][K] extends { format: infer F } ? FormatType<F> : never };
};

/** The configuration the daemon runs with: the schema's fields, and what was decided from them and the host. */
export type HarnessConfig = SchemaConfig & { host: HostDecisions };

/** Where an effective value came from, for `config show`. */
export type Origin = { source: 'default' } | { source: 'file'; path: string } | { source: 'env'; name: string } | { source: 'flag' };
