/**
 * Dependencies loaded when their feature is first used, not at import. Importing pino,
 * @opentelemetry/api or cockatiel costs a process 5–7 MB of RSS each (their many small CommonJS
 * files, and the optimizing compiler that loading them wakes), which an idle service that logs,
 * traces and trips nothing need not pay. All three are CommonJS packages, so require() gives the
 * very instance an `import` of them elsewhere in the program gets.
 */
import { createRequire } from "node:module";

/** A function returning the package, required on its first call. */
export function loadOnUse<T>(pkg: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= createRequire(import.meta.url)(pkg) as T);
}
