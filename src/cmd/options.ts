/**
 * A service's options: what code may set, what flags and MICRO_* variables add (only when the
 * program calls init()), the defaults, and the one rule for durations.
 */
import { FlagError, HelpRequested, fromArgv, fromEnv, parseDuration, usage, type FlagOptions } from "./flags.ts";
import type { Broker } from "../broker/broker.ts";
import type { Registry } from "../registry/registry.ts";
import type { Strategy } from "../selector/selector.ts";
import type { ClientTLS, ClientTransport, ServerTLS } from "../transport/transport.ts";
import type { Auth } from "../auth/auth.ts";
import type { Logger } from "../logger.ts";
import type { ObservabilityOptions } from "../observability/observability.ts";
import type { CallWrapper, HandlerWrapper, PublishWrapper, SubscriberWrapper } from "../wrapper/wrapper.ts";
import type { CircuitBreakerOptions } from "../resilience/breaker.ts";
import type { BulkheadOptions } from "../resilience/bulkhead.ts";
import type { RateLimitOptions } from "../resilience/rate-limit.ts";
import type { RetryOptions } from "../resilience/retry.ts";

/** A lifecycle hook; a rejection of a start hook fails start() with a StartupError. */
export type Hook = () => void | Promise<void>;

export interface ServiceOptions extends ObservabilityOptions {
  name?: string;
  version?: string;
  metadata?: Record<string, string>;
  /** host:port to listen on (default 127.0.0.1:0: loopback, a free port). */
  address?: string;
  /** host:port to register instead of the bound address. */
  advertise?: string;
  /** A plugin name or URI ("etcd://127.0.0.1:2379") or an instance. Default mdns. */
  registry?: string | Registry;
  registryAddress?: string[];
  /** A plugin name or URI ("mqtt://127.0.0.1:1883") or an instance. Default http. */
  broker?: string | Broker;
  brokerAddress?: string[];
  /**
   * "tcp" (default): call each node over the transport it advertises (tcp frames between tsmicro
   * nodes, go-micro's HTTP with the others); "http": HTTP with every node; another registered
   * transport's name: this node advertises it, so clients call it over it. Or a ClientTransport instance.
   */
  transport?: string | ClientTransport;
  selector?: Strategy;
  /** How long a registration stays valid (go-micro RegisterTTL). Default "60s". */
  registerTTL?: Duration;
  /** How often the service re-registers (go-micro RegisterInterval). Default "30s". */
  registerInterval?: Duration;
  clientRetries?: number;
  /** Per call attempt. Default "5s". */
  clientRequestTimeout?: Duration;
  clientPoolSize?: number;
  /** Longest a connection may take to establish; each call's own timeout caps it further. Default "5s". */
  clientDialTimeout?: Duration;
  /** Calls in flight per pooled tcp connection; beyond it, with every pooled connection this busy, a call fails at once with a retryable 503. Default 10000. */
  clientMaxInFlight?: number;
  /**
   * A circuit breaker per called node: true for DEFAULT_BREAKER (5 failures in a row or more than half of the
   * last 20 calls open it; a trial call after 5 s), or its settings. Default: only a failed
   * connection opens it, for 2 s.
   */
  clientCircuitBreaker?: boolean | CircuitBreakerOptions;
  /** Retries to one service may be at most this share of the calls to it (over 10 s, plus 1 a second), e.g. 0.2. Default: no budget. */
  clientRetryBudget?: number;
  /** The wait before a retry: "micro" (go-micro's, default) or "jitter" (exponential with jitter). */
  clientRetryBackoff?: RetryOptions["backoff"];
  /** Per endpoint, calls running at once and waiting; beyond them a 503. Default: no limit. */
  serverBulkhead?: BulkheadOptions;
  /** Per endpoint (or per key), calls per second; beyond them a 429. Default: no limit. */
  serverRateLimit?: RateLimitOptions;
  mdnsInterface?: string;
  /** How long stop() waits for in-flight calls. Default "10s". */
  drainTimeout?: Duration;
  /** Largest request or response body, in bytes. Default 4 MiB. */
  maxMessageSize?: number;
  /** Who may call this service and post to its http broker subscriptions (e.g. sharedToken()); its client sends the same credentials. Off by default. */
  auth?: Auth;
  /** How long a peer may stall mid-request before it is cut off. Default "30s". */
  readTimeout?: Duration;
  /** How long an HTTP request's headers (RPC port and http broker) may take from their first byte; a trickle cannot reset it (slowloris gets a 408). Default "10s". */
  headerTimeout?: Duration;
  /**
   * Serve the RPC port (both protocols) and the http broker's subscriptions only over TLS (mutual
   * TLS with clientCA); the node then advertises secure=true. PEM text. Off by default.
   */
  serverTLS?: ServerTLS;
  /** How this service's client and publisher dial nodes that advertise secure=true: the CA (default: the system's), and a certificate for mutual TLS. PEM text. */
  clientTLS?: ClientTLS;
  /** Install SIGINT/SIGTERM handlers in run(). Default true. */
  handleSignals?: boolean;
  /** The service's logger (pino); lines made in its calls and events carry trace_id/span_id when it has traceMixin (createLogger() does). Default: the shared default logger. */
  logger?: Logger;
  /** go-micro's wrappers; in each list the first is the outermost. Around each attempt of a client call on a node. */
  wrapCall?: CallWrapper[];
  /** Around every handler of this service's server, given the decoded request. */
  wrapHandler?: HandlerWrapper[];
  /** Around every publish of service.publish(), given the encoded message. */
  wrapPublish?: PublishWrapper[];
  /** Around every delivery to service.subscribe() handlers, before the body is decoded. */
  wrapSubscriber?: SubscriberWrapper[];
  /** go-micro's lifecycle hooks, run in order: before the server starts; a failure fails start(). */
  beforeStart?: Hook[];
  /** After the service is serving, subscribed and registered; a failure fails start() (and stops what started). */
  afterStart?: Hook[];
  /** When stop() begins, before deregistering; a failure is stop()'s rejection once the service has stopped. */
  beforeStop?: Hook[];
  /** Once everything is stopped and disconnected. */
  afterStop?: Hook[];
}

export interface InitOptions {
  /** Where MICRO_* variables are read from. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Leave flags that are not tsmicro's (and --help) in `args` instead of throwing. */
  allowUnknown?: boolean;
}

/**
 * The one unit rule for durations in code: a number is milliseconds, a string carries its unit
 * ("10s", "500ms", "1m30s"). Only the flags and MICRO_* variables keep go-micro's seconds.
 */
export type Duration = number | string;

const DURATION_KEYS = ["registerTTL", "registerInterval", "clientRequestTimeout", "clientDialTimeout", "drainTimeout", "readTimeout", "headerTimeout"] as const;
type DurationKey = (typeof DURATION_KEYS)[number];

/** The options with every duration in milliseconds. */
export type ResolvedOptions = Omit<ServiceOptions, DurationKey> & { [K in DurationKey]?: number } & Required<
    Pick<ServiceOptions, "name" | "version" | "registry" | "broker" | "transport">
  > & { registerTTL: number; registerInterval: number };

export const DEFAULTS: ResolvedOptions = {
  name: "go.micro.service",
  version: "latest",
  registry: "mdns",
  broker: "http",
  transport: "tcp",
  registerTTL: 60_000,
  registerInterval: 30_000,
};

/** Durations given as strings become milliseconds; a malformed one names its option. */
function inMilliseconds(o: ServiceOptions): Partial<ResolvedOptions> {
  const out: Record<string, unknown> = withoutUndefined({ ...o });
  for (const key of DURATION_KEYS) {
    const value = o[key];
    if (typeof value !== "string") continue;
    try {
      out[key] = parseDuration(value);
    } catch (err) {
      throw new TypeError(`${key}: ${(err as Error).message}`);
    }
  }
  return out as Partial<ResolvedOptions>;
}

/** Registries and brokers keep go-micro's TTLs in whole seconds. */
export const toSeconds = (ms: number): number => Math.ceil(ms / 1000);

/** Maps flag/env option names onto service option names. */
function toServiceOptions(f: FlagOptions): ServiceOptions {
  const o: ServiceOptions = {
    name: f.name,
    version: f.version,
    metadata: f.metadata,
    address: f.address,
    advertise: f.advertise,
    registry: f.registry,
    registryAddress: f.registryAddress,
    broker: f.broker,
    brokerAddress: f.brokerAddress,
    transport: f.transport,
    selector: f.selector as Strategy | undefined,
    registerTTL: f.registerTTL === undefined ? undefined : f.registerTTL * 1000, // flags say seconds
    registerInterval: f.registerInterval === undefined ? undefined : f.registerInterval * 1000,
    clientRetries: f.clientRetries,
    clientRequestTimeout: f.clientRequestTimeout,
    clientPoolSize: f.clientPoolSize,
    clientDialTimeout: f.clientDialTimeout,
    clientMaxInFlight: f.clientMaxInFlight,
    headerTimeout: f.headerTimeout,
    clientCircuitBreaker: f.clientCircuitBreaker,
    clientRetryBudget: f.clientRetryBudget,
    clientRetryBackoff: f.clientRetryBackoff,
    serverBulkhead: f.serverBulkhead,
    serverRateLimit: f.serverRateLimit,
    mdnsInterface: f.mdnsInterface,
    // Partial here: completed from the code's options, and checked, in applyProcessOptions.
    serverTLS: someOf({ cert: f.serverTlsCert, key: f.serverTlsKey, clientCA: f.serverTlsClientCa }) as ServerTLS | undefined,
    clientTLS: someOf({ ca: f.clientTlsCa, cert: f.clientTlsCert, key: f.clientTlsKey }),
    metrics: f.metrics,
  };
  return withoutUndefined(o);
}

/** The fields that are set, or undefined if none is. */
function someOf<T extends object>(o: T): T | undefined {
  const set = withoutUndefined(o);
  return Object.keys(set).length > 0 ? set : undefined;
}

/** A certificate without its key (or a key without its certificate): which option and flag are missing. */
function tlsProblem(o: ServiceOptions): { option: string; flag: string } | undefined {
  const s = o.serverTLS as Partial<ServerTLS> | undefined;
  if (s && !s.cert) return { option: "serverTLS.cert", flag: "--server_tls_cert" };
  if (s && !s.key) return { option: "serverTLS.key", flag: "--server_tls_key" };
  const c = o.clientTLS;
  if (c?.cert && !c.key) return { option: "clientTLS.key", flag: "--client_tls_key" };
  if (c?.key && !c.cert) return { option: "clientTLS.cert", flag: "--client_tls_cert" };
  return undefined;
}

/** So that an option left undefined never hides a default. */
function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** An option given in code that cannot work; `option` names it. */
export class OptionError extends TypeError {
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(`${option}: ${message}`);
    this.name = "OptionError";
  }
}

type RegistrationKey = "registerTTL" | "registerInterval";

/** The longest delay setTimeout honours (2^31 - 1 ms); a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A TTL or interval of 0, or an interval not shorter than the TTL, lets a running node drop out
 * of the registry between renewals: the option at fault and why, or undefined when they work.
 */
function registrationProblem(o: ResolvedOptions): { key: RegistrationKey; why: string } | undefined {
  if (!(o.registerTTL > 0)) return { key: "registerTTL", why: "must be more than 0" };
  if (!Number.isFinite(o.registerTTL)) return { key: "registerTTL", why: "must be finite" };
  if (!(o.registerInterval > 0)) return { key: "registerInterval", why: "must be more than 0: nothing would renew the registration" };
  if (o.registerInterval > MAX_TIMER_MS) {
    return { key: "registerInterval", why: `must be at most ${MAX_TIMER_MS} ms (about 24.8 days): Node runs a longer timer at once, so renewals would never pause` };
  }
  if (o.registerInterval >= o.registerTTL) return { key: "registerInterval", why: "must be shorter than the TTL, or the entry expires between renewals" };
  return undefined;
}

/** The code's options over the defaults, durations in milliseconds. Throws OptionError for registration times that cannot work. */
export function resolveOptions(code: ServiceOptions): ResolvedOptions {
  const options = { ...DEFAULTS, ...inMilliseconds(code) };
  const tls = tlsProblem(options);
  if (tls) throw new OptionError(tls.option, "is missing: a TLS certificate needs its key, and a key its certificate");
  const problem = registrationProblem(options);
  if (problem) {
    throw new OptionError(problem.key, `${options[problem.key]} ms ${problem.why} (registerTTL ${options.registerTTL} ms, registerInterval ${options.registerInterval} ms)`);
  }
  return options;
}

/**
 * MICRO_* variables and then flags over `current` (flag > env > code > default), and the
 * arguments that were not flags. Throws FlagError for a bad value, HelpRequested for --help.
 */
export function applyProcessOptions(
  current: ResolvedOptions,
  argv: string[],
  { env = process.env, allowUnknown = false }: InitOptions = {},
): { options: ResolvedOptions; args: string[] } {
  const parsed = fromArgv(argv, { allowUnknown });
  if (parsed.help) throw new HelpRequested(usage(current.name));
  const fromEnvironment = fromEnv(env);
  const [fromVariables, fromFlags] = [toServiceOptions(fromEnvironment), toServiceOptions(parsed.options)];
  const options = { ...current, ...inMilliseconds(fromVariables), ...inMilliseconds(fromFlags) };
  // TLS settings merge field by field: a flag can add the client CA to a certificate set in code.
  if (fromVariables.serverTLS || fromFlags.serverTLS) options.serverTLS = { ...current.serverTLS, ...fromVariables.serverTLS, ...fromFlags.serverTLS } as ServerTLS;
  if (fromVariables.clientTLS || fromFlags.clientTLS) options.clientTLS = { ...current.clientTLS, ...fromVariables.clientTLS, ...fromFlags.clientTLS };
  const tls = tlsProblem(options);
  if (tls) throw new FlagError(`invalid TLS settings: ${tls.flag} (or ${tls.option} in code) is missing: a TLS certificate needs its key, and a key its certificate`);
  const problem = registrationProblem(options);
  if (problem) {
    // One line naming where each value came from (a flag, a MICRO_* variable, or code/default), led by the one set last.
    const from = (key: RegistrationKey) => (parsed.options[key] !== undefined ? 2 : fromEnvironment[key] !== undefined ? 1 : 0);
    const origin = (key: RegistrationKey, flag: string) =>
      from(key) === 2 ? `--${flag}=${parsed.options[key]}` : from(key) === 1 ? `MICRO_${flag.toUpperCase()}=${fromEnvironment[key]}` : `${key} ${options[key]} ms`;
    const ttl = origin("registerTTL", "register_ttl");
    const interval = origin("registerInterval", "register_interval");
    const lead = problem.key === "registerTTL" || from("registerTTL") > from("registerInterval") ? ttl : interval;
    throw new FlagError(`invalid ${lead}: the register ${problem.key === "registerTTL" ? "TTL" : "interval"} ${problem.why} (${interval}, ${ttl})`);
  }
  return { options, args: parsed.positionals };
}
