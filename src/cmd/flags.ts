/**
 * go-micro's flags and MICRO_* environment → service options. Precedence: flag > env > code >
 * default. A bad value is a FlagError, one line naming the flag (or variable); the bin or
 * runMain() turns it into that line on stderr and exit 2.
 */
import { fs } from "../builtins.ts";
import { brokers, parsePluginRef, registries, transports, type PluginKind } from "./plugins.ts";
import { selectors } from "../selector/selector.ts";
import { DEFAULT_BREAKER, type CircuitBreakerOptions } from "../resilience/breaker.ts";
import type { BulkheadOptions } from "../resilience/bulkhead.ts";
import { perCaller, type RateLimitOptions } from "../resilience/rate-limit.ts";
import { BACKOFFS, type RetryOptions } from "../resilience/retry.ts";

export class FlagError extends Error {
  readonly exitCode: number = 2;
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

/** --help or -h was given: `usage` is the text to print; runMain() prints it and exits 0. */
export class HelpRequested extends FlagError {
  override readonly exitCode = 0;
  constructor(readonly usage: string) {
    super("help requested");
    this.name = "HelpRequested";
  }
}

/** Options that flags and environment can set (durations in seconds, as go-micro's flags). */
export interface FlagOptions {
  registry?: string;
  registryAddress?: string[];
  registerTTL?: number;
  registerInterval?: number;
  broker?: string;
  brokerAddress?: string[];
  name?: string;
  version?: string;
  address?: string;
  advertise?: string;
  metadata?: Record<string, string>;
  transport?: string;
  selector?: string;
  clientRetries?: number;
  /** Milliseconds. */
  clientRequestTimeout?: number;
  clientPoolSize?: number;
  /** Milliseconds. */
  clientDialTimeout?: number;
  clientMaxInFlight?: number;
  /** Milliseconds. */
  headerTimeout?: number;
  /** PEM text, read from the files the TLS flags name. */
  serverTlsCert?: string;
  serverTlsKey?: string;
  serverTlsClientCa?: string;
  clientTlsCa?: string;
  clientTlsCert?: string;
  clientTlsKey?: string;
  /** false: only the connection breaker every client has. */
  clientCircuitBreaker?: CircuitBreakerOptions | false;
  clientRetryBudget?: number;
  clientRetryBackoff?: RetryOptions["backoff"];
  serverBulkhead?: BulkheadOptions;
  serverRateLimit?: RateLimitOptions;
  mdnsInterface?: string;
  metrics?: boolean;
}

type Parse = (raw: string, prev: unknown) => unknown;

interface FlagSpec {
  flag: string;
  key: keyof FlagOptions;
  /** A function for text that names what is registered when usage() is asked for. */
  help: string | (() => string);
  parse: Parse;
  /** The value of the flag given bare (`--client_circuit_breaker`), as Go's bool flags; without it a flag needs a value. */
  bare?: string;
}

/** A name (or URI) registered in kind when the flag is read, so plugins registered by the program count. */
const oneOf =
  (kind: PluginKind<unknown>): Parse =>
  (raw) => {
    const { name } = parsePluginRef(raw);
    if (!kind.has(name)) throw new Error(`unknown ${kind.kind} "${raw}" (known: ${kind.names().join(", ")})`);
    return raw;
  };

const wholeNumber =
  (min: number): Parse =>
  (raw) => {
    if (!/^\d+$/.test(raw.trim()) || Number(raw) < min) throw new Error(`"${raw}" is not a whole number${min > 0 ? ` ≥ ${min}` : ""}`);
    return Number(raw);
  };

/** go durations ("5s", "500ms", "1m30s") or a bare number of seconds → milliseconds. */
export function parseDuration(raw: string): number {
  const s = raw.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = s;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) throw new Error(`"${raw}" is not a duration (e.g. 5s, 500ms, 1m)`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  if (s.length === 0) throw new Error(`"${raw}" is not a duration (e.g. 5s, 500ms, 1m)`);
  return total;
}

/** A duration flag (go syntax or seconds) that must be more than zero, in milliseconds. */
const positiveDuration: Parse = (raw) => {
  const ms = parseDuration(raw);
  if (ms <= 0) throw new Error(`"${raw}" must be positive`);
  return ms;
};

/** A flag naming a PEM file: its text, so a missing or wrong file is a bad flag (exit 2), not a failure at start. */
const pemFile: Parse = (raw) => {
  let pem: string;
  try {
    pem = fs.readFileSync(raw, "utf8");
  } catch (err) {
    throw new Error(`cannot read "${raw}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!pem.includes("-----BEGIN ")) throw new Error(`"${raw}" is not a PEM file`);
  return pem;
};

/** "10" or "10,100": one or two whole numbers ≥ 1 (the second may be 0). */
const counts = (raw: string, what: string): [number, number | undefined] => {
  const m = /^\s*(\d+)\s*(?:,\s*(\d+)\s*)?$/.exec(raw);
  if (!m || Number(m[1]) < 1) throw new Error(`"${raw}" is not ${what}`);
  return [Number(m[1]), m[2] === undefined ? undefined : Number(m[2])];
};

const backoffName: Parse = (raw) => {
  if (!(BACKOFFS as readonly string[]).includes(raw)) throw new Error(`unknown backoff "${raw}" (known: ${BACKOFFS.join(", ")})`);
  return raw;
};

const bulkhead: Parse = (raw): BulkheadOptions => {
  const [maxConcurrent, maxQueued] = counts(raw, "max_concurrent[,max_queued] (e.g. 10,100)");
  return { maxConcurrent, maxQueued };
};

/** calls_per_second[,burst][,caller]: a trailing "caller" gives each calling service its own bucket. */
const rateLimit: Parse = (raw): RateLimitOptions => {
  const byCaller = /,\s*caller\s*$/.test(raw);
  const [rate, burst] = counts(raw.replace(/,\s*caller\s*$/, ""), "calls_per_second[,burst][,caller] (e.g. 100, 100,200 or 100,caller)");
  if (burst === 0) throw new Error(`"${raw}": a burst of 0 lets no call through`);
  return byCaller ? { rate, burst, key: perCaller } : { rate, burst };
};

const share: Parse = (raw) => {
  const n = Number(raw);
  if (raw.trim() === "" || !(n >= 0 && n <= 1)) throw new Error(`"${raw}" is not a share between 0 and 1 (e.g. 0.2)`);
  return n;
};

/** true/false, a number of failures in a row, or failures=5,ratio=0.5,window=20,half_open=5s. */
const breakerSettings: Parse = (raw): CircuitBreakerOptions | false => {
  const v = raw.trim().toLowerCase();
  if (v === "true") return { ...DEFAULT_BREAKER };
  if (v === "false") return false;
  if (/^\d+$/.test(v) && Number(v) >= 1) return { ...DEFAULT_BREAKER, consecutiveFailures: Number(v) };
  const out: CircuitBreakerOptions = { ...DEFAULT_BREAKER };
  for (const pair of v.split(",")) {
    const [key, value = ""] = pair.split("=").map((p) => p.trim());
    const n = Number(value);
    if (key === "failures" && /^\d+$/.test(value) && n >= 1) out.consecutiveFailures = n;
    else if (key === "ratio" && value !== "" && n > 0 && n <= 1) out.failureRatio = n;
    else if (key === "window" && /^\d+$/.test(value) && n >= 1) out.window = n;
    else if (key === "half_open") out.halfOpenAfter = parseDuration(value);
    else throw new Error(`"${pair}" is not one of true, false, N, failures=N, ratio=0..1, window=N, half_open=duration`);
  }
  return out;
};

const text: Parse = (raw) => {
  if (raw.trim() === "") throw new Error("must not be empty");
  return raw;
};
const bool: Parse = (raw) => {
  const value = { true: true, "1": true, false: false, "0": false }[raw.trim().toLowerCase()];
  if (value === undefined) throw new Error(`"${raw}" is not true or false`);
  return value;
};
const list: Parse = (raw) => raw.split(",").map((a) => a.trim()).filter(Boolean);
const hostPort: Parse = (raw) => {
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]*):\d{1,5}$/.test(raw) || Number(raw.split(":").pop()) > 65535)
    throw new Error(`"${raw}" is not host:port`);
  return raw;
};
const keyValue: Parse = (raw, prev) => {
  const out = { ...((prev as Record<string, string>) ?? {}) };
  for (const pair of raw.split(",")) {
    const i = pair.indexOf("=");
    if (i <= 0) throw new Error(`"${pair}" is not key=value`);
    out[pair.slice(0, i).trim()] = pair.slice(i + 1);
  }
  return out;
};

export const FLAGS: FlagSpec[] = [
  { flag: "registry", key: "registry", help: () => `registry plugin or URI (${registries.names().join(", ")}); default mdns`, parse: oneOf(registries) },
  { flag: "registry_address", key: "registryAddress", help: "comma-separated registry addresses", parse: list },
  { flag: "register_ttl", key: "registerTTL", help: "seconds a registration stays valid (> register_interval); default 60", parse: wholeNumber(1) },
  { flag: "register_interval", key: "registerInterval", help: "seconds between re-registrations (< register_ttl); default 30", parse: wholeNumber(1) },
  { flag: "broker", key: "broker", help: () => `broker plugin or URI (${brokers.names().join(", ")}); default http`, parse: oneOf(brokers) },
  { flag: "broker_address", key: "brokerAddress", help: "comma-separated broker addresses", parse: list },
  { flag: "server_name", key: "name", help: "service name", parse: text },
  { flag: "server_version", key: "version", help: "service version", parse: text },
  { flag: "server_address", key: "address", help: "host:port to listen on; default 127.0.0.1:0", parse: hostPort },
  { flag: "server_advertise", key: "advertise", help: "host:port to register instead of the bound address", parse: hostPort },
  { flag: "server_metadata", key: "metadata", help: "k=v node metadata (repeatable, or k=v,k2=v2)", parse: keyValue },
  { flag: "transport", key: "transport", help: () => `client transport (${transports.names().join(", ")}); default tcp`, parse: oneOf(transports) },
  { flag: "selector", key: "selector", help: () => `node selection (${selectors.names().join(", ")}); default random`, parse: oneOf(selectors) },
  { flag: "client_retries", key: "clientRetries", help: "retries on connection failure or timeout; default 1", parse: wholeNumber(0) },
  { flag: "client_request_timeout", key: "clientRequestTimeout", help: "per-attempt timeout (5s, 500ms); default 5s", parse: positiveDuration },
  { flag: "client_pool_size", key: "clientPoolSize", help: "connections per node; default 1", parse: wholeNumber(1) },
  { flag: "client_dial_timeout", key: "clientDialTimeout", help: "longest a connection may take to establish (capped by the call's timeout); default 5s", parse: positiveDuration },
  { flag: "client_max_in_flight", key: "clientMaxInFlight", help: "calls in flight per pooled tcp connection before calls fail fast with a 503; default 10000", parse: wholeNumber(1) },
  { flag: "server_header_timeout", key: "headerTimeout", help: "longest an HTTP request's headers may take from its first byte (slowloris gets a 408); default 10s", parse: positiveDuration },
  { flag: "server_tls_cert", key: "serverTlsCert", help: "PEM certificate file: the RPC port and http broker serve only TLS (with --server_tls_key)", parse: pemFile },
  { flag: "server_tls_key", key: "serverTlsKey", help: "PEM private key file of --server_tls_cert", parse: pemFile },
  { flag: "server_tls_client_ca", key: "serverTlsClientCa", help: "PEM CA file: require client certificates it signed (mutual TLS)", parse: pemFile },
  { flag: "client_tls_ca", key: "clientTlsCa", help: "PEM CA file to verify nodes advertising secure=true by; default the system's CAs", parse: pemFile },
  { flag: "client_tls_cert", key: "clientTlsCert", help: "PEM client certificate file for nodes that require mutual TLS (with --client_tls_key)", parse: pemFile },
  { flag: "client_tls_key", key: "clientTlsKey", help: "PEM private key file of --client_tls_cert", parse: pemFile },
  {
    flag: "client_circuit_breaker",
    key: "clientCircuitBreaker",
    help: "circuit breaker per node: bare or true (5 failures in a row or more than half of the last 20 calls open it for 5s), N failures, or failures=N,ratio=0.5,window=20,half_open=5s; default: only failed connections, for 2s",
    parse: breakerSettings,
    bare: "true",
  },
  { flag: "client_retry_budget", key: "clientRetryBudget", help: "retries at most this share of the calls to a service over 10s, plus 1/s (e.g. 0.2); default no budget", parse: share },
  { flag: "client_retry_backoff", key: "clientRetryBackoff", help: `wait before a retry (${BACKOFFS.join(", ")}: go-micro's, or exponential 100ms-5s with jitter); default micro`, parse: backoffName },
  { flag: "server_bulkhead", key: "serverBulkhead", help: "per endpoint: max_concurrent[,max_queued] calls, beyond them a 503 (e.g. 10,100); default no limit", parse: bulkhead },
  { flag: "server_rate_limit", key: "serverRateLimit", help: "per endpoint: calls_per_second[,burst][,caller] (caller: per calling service), beyond them a 429 (e.g. 100); default no limit", parse: rateLimit },
  { flag: "mdns_interface", key: "mdnsInterface", help: "interface (name or IPv4) for the mdns registry; default loopback", parse: text },
  { flag: "metrics", key: "metrics", help: "Prometheus metrics at GET /metrics on the node's port (true, false); default true", parse: bool },
];

const byFlag = new Map(FLAGS.map((f) => [f.flag, f]));

function apply(spec: FlagSpec, raw: string, out: FlagOptions, label: string): void {
  try {
    (out as Record<string, unknown>)[spec.key] = spec.parse(raw, out[spec.key]);
  } catch (err) {
    throw new FlagError(`invalid value for ${label}: ${(err as Error).message}`);
  }
}

/** Reads MICRO_<FLAG> variables. */
export function fromEnv(env: NodeJS.ProcessEnv = process.env): FlagOptions {
  const out: FlagOptions = {};
  for (const spec of FLAGS) {
    const name = `MICRO_${spec.flag.toUpperCase()}`;
    const raw = env[name];
    if (raw !== undefined && raw !== "") apply(spec, raw, out, name);
  }
  return out;
}

export interface ParsedArgs {
  options: FlagOptions;
  /** Arguments that are not flags, in order. */
  positionals: string[];
  help: boolean;
}

/**
 * Parses --flag=value, --flag value and Go's single-dash -flag=value. With allowUnknown, flags
 * that are not tsmicro's are kept among the positionals (for the program's own parser) instead of
 * being an error; --help is then the program's too, kept likewise (usage() lists tsmicro's flags).
 */
export function fromArgv(argv: string[], { allowUnknown = false } = {}): ParsedArgs {
  const options: FlagOptions = {};
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    if ((body === "help" || body === "h") && !allowUnknown) {
      help = true;
      continue;
    }
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const spec = byFlag.get(name) ?? byFlag.get(name.replace(/-/g, "_"));
    if (!spec && allowUnknown) {
      positionals.push(arg);
      continue;
    }
    if (!spec) throw new FlagError(`unknown flag --${name} (see --help)`);
    let raw: string | undefined = eq >= 0 ? body.slice(eq + 1) : (spec.bare ?? argv[i + 1]);
    if (eq < 0 && spec.bare === undefined) {
      if (raw === undefined || raw.startsWith("--")) throw new FlagError(`flag --${name} needs a value`);
      i++;
    }
    apply(spec, raw, options, `--${spec.flag}`);
  }
  return { options, positionals, help };
}

export const helpText = (spec: FlagSpec): string => (typeof spec.help === "string" ? spec.help : spec.help());

export function usage(program: string): string {
  const lines = FLAGS.map((f) => `  --${f.flag.padEnd(24)} ${helpText(f)}  [$MICRO_${f.flag.toUpperCase()}]`);
  return `Usage: ${program} [flags]\n\nFlags:\n${lines.join("\n")}\n`;
}
