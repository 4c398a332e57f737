// prom-client's individual default-metric collectors (lib/metrics/*.js), which it ships
// without types. Each registers its metrics on the registry it is given.
declare module 'prom-client/lib/metrics/*.js' {
  import type { Registry } from 'prom-client';
  const register: (registry: Registry, config: { prefix?: string }) => void;
  export default register;
}
