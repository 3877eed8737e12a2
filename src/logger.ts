/**
 * Structured logging (pino, to stderr so stdout stays the program's own). Every line made inside
 * a traced call or event carries the active span's trace_id and span_id, so logs join traces.
 * A service logs through its own logger (ServiceOptions.logger); the default below is for code
 * outside a service and for services given none.
 */
import { pino, destination, type DestinationStream, type Logger, type LoggerOptions } from "pino";
import { otelApi, otelRegistered } from "./observability/otel-api.ts";

export type { Logger } from "pino";

/**
 * pino's mixin for trace-joined logs: the active span's ids, or nothing outside a span. A new
 * object each time: pino merges the line's own fields into what the mixin returns.
 */
export function traceMixin(): { trace_id?: string; span_id?: string } {
  if (!otelRegistered("context")) return {}; // without a context manager no span is ever active
  const { trace, isSpanContextValid } = otelApi();
  const ids = trace.getActiveSpan()?.spanContext();
  return ids && isSpanContextValid(ids) ? { trace_id: ids.traceId, span_id: ids.spanId } : {};
}

/** A pino logger as tsmicro makes them: level from MICRO_LOG_LEVEL (read now), trace ids mixed in, to stderr. */
export function createLogger(opts: LoggerOptions = {}, stream: DestinationStream = destination({ fd: 2, sync: true })): Logger {
  return pino({ name: "tsmicro", level: process.env.MICRO_LOG_LEVEL ?? "info", mixin: traceMixin, ...opts }, stream);
}

let fallback: Logger | undefined;

/** The logger of code outside a service, made on first use (so MICRO_LOG_LEVEL set after import counts). */
export function defaultLogger(): Logger {
  fallback ??= createLogger();
  return fallback;
}

/**
 * The default logger under the name framework files import; it resolves to defaultLogger() on
 * each use, so importing this module creates nothing and reads no environment.
 */
export const logger: Logger = new Proxy({} as Logger, {
  get(_, key) {
    const target = defaultLogger();
    const value: unknown = Reflect.get(target, key);
    return typeof value === "function" ? value.bind(target) : value;
  },
  set: (_, key, value) => Reflect.set(defaultLogger(), key, value),
});
