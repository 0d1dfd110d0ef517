import { createRequire } from "node:module";
import { KeelError } from "./errors/index.ts";

const require = createRequire(import.meta.url);

/**
 * A peer dependency loaded on first use (synchronously), not with the module that needs it, so a
 * node that never uses it never pays its memory. It is resolved at once, so a missing package
 * still fails the import of that module with CONFIGURATION, as a static import would fail it.
 */
export function lazyPeer<T>(name: string, missing: string): () => T {
  try {
    require.resolve(name);
  } catch (cause) {
    throw new KeelError("CONFIGURATION", missing, { cause });
  }
  let loaded: T | undefined;
  return () => {
    loaded ??= require(name) as T;
    return loaded;
  };
}
