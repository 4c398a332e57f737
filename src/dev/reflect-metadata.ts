/**
 * The small part of the Reflect metadata API that @peculiar/x509's dependency injection
 * container (tsyringe) insists on at import time. No `reflect-metadata` package is
 * installed and x509 never stores design-time metadata, so a WeakMap store is all it
 * needs. Import this module before @peculiar/x509.
 */
type MetadataStore = WeakMap<object, Map<unknown, unknown>>;

interface ReflectMetadata {
  getMetadata?: (key: unknown, target: object) => unknown;
  getOwnMetadata?: (key: unknown, target: object) => unknown;
  defineMetadata?: (key: unknown, value: unknown, target: object) => void;
  metadata?: (key: unknown, value: unknown) => (target: object) => void;
}

const reflect = Reflect as unknown as ReflectMetadata;

if (!reflect.getMetadata) {
  const store: MetadataStore = new WeakMap();
  const own = (key: unknown, target: object): unknown => store.get(target)?.get(key);
  const define = (key: unknown, value: unknown, target: object): void => {
    const entries = store.get(target) ?? new Map<unknown, unknown>();
    entries.set(key, value);
    store.set(target, entries);
  };
  reflect.getOwnMetadata = own;
  reflect.defineMetadata = define;
  reflect.getMetadata = (key, target) => {
    for (let t: object | null = target; t; t = Object.getPrototypeOf(t) as object | null) {
      const value = own(key, t);
      if (value !== undefined) return value;
    }
    return undefined;
  };
  reflect.metadata = (key, value) => (target) => define(key, value, target);
}
