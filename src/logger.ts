/**
 * Structured logging (pino, to stderr so stdout stays the program's own). Every line made inside
 * a traced call or event carries the active span's trace_id and span_id, so logs join traces.
 * A service logs through its own logger (ServiceOptions.logger); the default below is for code
 * outside a service and for services given none.
 */
import { isSpanContextValid, trace } from "@opentelemetry/api";
import { pino, destination, type DestinationStream, type Logger, type LoggerOptions } from "pino";

export type { Logger } from "pino";

const NO_TRACE = {};

/** pino's mixin for trace-joined logs: the active span's ids, or nothing outside a span. */
export function traceMixin(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  if (!span) return NO_TRACE;
  const ids = span.spanContext();
  return isSpanContextValid(ids) ? { trace_id: ids.traceId, span_id: ids.spanId } : NO_TRACE;
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
