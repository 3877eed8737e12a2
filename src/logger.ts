/**
 * Structured logging (pino, to stderr so stdout stays the program's own). Every line made inside
 * a traced call or event carries the active span's trace_id and span_id, so logs join traces.
 * A service logs through its own logger (ServiceOptions.logger); the default below is for code
 * outside a service and for services given none. pino itself is loaded by the first logger made,
 * and the default logger is made with its first line at an enabled level (see load-on-use.ts).
 */
import type { DestinationStream, Logger, LoggerOptions } from "pino";
import { loadOnUse } from "./load-on-use.ts";
import { otelApi, otelRegistered } from "./observability/otel-api.ts";

export type { Logger } from "pino";

const pinoModule = loadOnUse<typeof import("pino")>("pino");

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
export function createLogger(opts: LoggerOptions = {}, stream?: DestinationStream): Logger {
  const { pino, destination } = pinoModule();
  return pino({ name: "tsmicro", level: process.env.MICRO_LOG_LEVEL ?? "info", mixin: traceMixin, ...opts }, stream ?? destination({ fd: 2, sync: true }));
}

/** pino's own levels and their numbers; "silent" is above them all. */
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/**
 * createLogger() at the given level, made when a line is first written at an enabled level or
 * the logger is used any other way; reading and setting its level, and lines below it, do not
 * make it.
 */
function createLoggerOnUse(level: string): Logger {
  let made: Logger | undefined;
  const make = () => (made ??= createLogger({ level }));
  const known = (name: unknown): name is string => typeof name === "string" && Object.hasOwn(LEVELS, name);
  if (!known(level)) make(); // a level pino does not know fails now, as it always did
  const skip = () => {};
  return new Proxy({} as Logger, {
    get(_, key) {
      if (!made) {
        if (key === "level") return level;
        // A line below the level, or the "silent" method, writes nothing: pino's own are no-ops too.
        if (known(key) && LEVELS[key]! < LEVELS[level]!) return skip;
        if (key === "silent") return skip;
      }
      const target = make();
      const value: unknown = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
    set(_, key, value) {
      if (made || key !== "level" || !known(value)) return Reflect.set(make(), key, value);
      level = value;
      return true;
    },
  });
}

let fallback: Logger | undefined;

/** The logger of code outside a service, made on first use (so MICRO_LOG_LEVEL set after import counts). */
export function defaultLogger(): Logger {
  fallback ??= createLoggerOnUse(process.env.MICRO_LOG_LEVEL ?? "info");
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
