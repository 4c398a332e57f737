/**
 * Validation of custom resources against their CustomResourceDefinition, the way the API
 * server does it: unknown fields pruned (unless x-kubernetes-preserve-unknown-fields),
 * defaults applied, then the openAPIV3Schema checked. The embedded store uses it so the
 * demo refuses exactly the objects a real cluster would refuse.
 */
import AjvModule from 'ajv';
import type { ValidateFunction } from 'ajv';
import yaml from 'js-yaml';

// ajv ships CommonJS with a default export; under NodeNext the class is on .default.
const Ajv = AjvModule.default;

type Schema = Record<string, unknown> & {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
};

export interface CrdVersionSchema {
  group: string;
  version: string;
  kind: string;
  /** Whether status is written only through the status subresource. */
  statusSubresource: boolean;
  /** Prunes, defaults and validates an object in place; returns the problems, empty when valid. */
  check(object: Record<string, unknown>): string[];
}

interface Crd {
  kind?: string;
  spec?: {
    group: string;
    names: { kind: string };
    versions: Array<{ name: string; served?: boolean; subresources?: { status?: unknown }; schema?: { openAPIV3Schema?: Schema } }>;
  };
}

const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Every served version of every CRD in the YAML text (one or several documents). */
export function crdSchemas(yamlText: string): CrdVersionSchema[] {
  const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true });
  // The formats Kubernetes CRDs use; int32/int64 are range hints the schema's min/max already carry.
  ajv.addFormat('int32', true);
  ajv.addFormat('int64', true);
  ajv.addFormat('date-time', DATE_TIME);
  const out: CrdVersionSchema[] = [];
  for (const doc of yaml.loadAll(yamlText) as Crd[]) {
    if (!doc || doc.kind !== 'CustomResourceDefinition' || !doc.spec) continue;
    for (const version of doc.spec.versions) {
      if (version.served === false) continue;
      const root = version.schema?.openAPIV3Schema ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
      // metadata is validated by the store itself (as the API server does), not by the CRD.
      const { metadata: _metadata, ...properties } = root.properties ?? {};
      const body: Schema = { ...root, properties };
      const validate: ValidateFunction = ajv.compile(body);
      out.push({
        group: doc.spec.group,
        version: version.name,
        kind: doc.spec.names.kind,
        statusSubresource: version.subresources?.status !== undefined,
        check(object) {
          const { metadata, apiVersion, kind, ...rest } = object;
          prune(rest, body);
          const candidate = { apiVersion, kind, ...rest };
          const problems = validate(candidate)
            ? []
            : (validate.errors ?? []).map((e) => `${e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(root)'}: ${e.message ?? 'invalid'}`);
          Object.assign(object, candidate, { metadata });
          return problems;
        },
      });
    }
  }
  return out;
}

/** Drops fields the schema does not declare, as the API server's structural pruning does. */
function prune(value: unknown, schema: Schema | undefined): void {
  if (!schema || schema['x-kubernetes-preserve-unknown-fields']) return;
  if (Array.isArray(value)) {
    for (const item of value) prune(item, schema.items);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    const property = schema.properties?.[key];
    if (property) prune(record[key], property);
    else if (typeof schema.additionalProperties === 'object') prune(record[key], schema.additionalProperties);
    else if (schema.additionalProperties !== true && key !== 'apiVersion' && key !== 'kind') delete record[key];
  }
}
