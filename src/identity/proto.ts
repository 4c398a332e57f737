/**
 * The SPIFFE Workload API service definition, loaded once from the vendored proto. Shared
 * by the client and the development server so both speak exactly the upstream schema.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { packageRoot } from '../util/paths.ts';

/** The metadata every Workload API call must carry (SPIFFE Workload API spec, section 6.2). */
export const SECURITY_HEADER = 'workload.spiffe.io';

/** X509SVIDResponse as @grpc/proto-loader decodes it (field names as in the proto). */
export interface RawX509SvidResponse {
  svids: RawX509Svid[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}

export interface RawX509Svid {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

export interface RawX509BundlesResponse {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}

let service: grpc.ServiceClientConstructor | undefined;

/** The `SpiffeWorkloadAPI` client constructor; `.service` is the definition a server registers. */
export function workloadApiService(): grpc.ServiceClientConstructor {
  if (service) return service;
  const definition = loadSync(join(packageRoot(), 'proto', 'workload.proto'), {
    keepCase: true,
    defaults: true,
    longs: String,
    enums: String,
    oneofs: true,
  });
  service = grpc.loadPackageDefinition(definition)['SpiffeWorkloadAPI'] as grpc.ServiceClientConstructor;
  return service;
}
