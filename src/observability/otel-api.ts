/**
 * @opentelemetry/api, loaded only once something is registered with it: until a program registers
 * a tracer provider (an SDK) or a context manager, no span can be active or started, and the API
 * would only answer no-ops.
 */
import { loadOnUse } from "../load-on-use.ts";

export const otelApi = loadOnUse<typeof import("@opentelemetry/api")>("@opentelemetry/api");

/** Where every copy of the API (major version 1) keeps what is registered with it: @opentelemetry/api's internal/global-utils. */
const GLOBAL_KEY = Symbol.for("opentelemetry.js.api.1");

/** Whether anything is registered globally as the API's `kind` ("trace": a tracer provider, "context": a context manager). */
export function otelRegistered(kind: "trace" | "context"): boolean {
  const registry = (globalThis as { [GLOBAL_KEY]?: Record<string, unknown> })[GLOBAL_KEY];
  return registry?.[kind] !== undefined;
}
