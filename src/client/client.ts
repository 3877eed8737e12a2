/**
 * The RPC client: selects a node through the registry, calls it over the transport, and on a
 * connection failure or timeout retries on another node, within the retry policy's backoff and
 * budget; a circuit breaker per node keeps calls off nodes that keep failing.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import { codecFor, JSON_TYPE } from "../codec/codec.ts";
import { MicroError, badRequest, internalServerError, timeout } from "../errors.ts";
import { isNotFound, type Node, type Registry } from "../registry/registry.ts";
import { Selector, type Filter, type Next, type Strategy } from "../selector/selector.ts";
import { UnknownPluginError, transports } from "../cmd/plugins.ts";
import { HEADER, SECURE_METADATA, type ClientTLS, type ClientTransport, type ClientTransportOptions, type Headers, type Transport } from "../transport/transport.ts";
import type { Auth } from "../auth/auth.ts";
import { CONNECTION_BREAKER, NodeBreakers, type BreakerStateChange, type CircuitBreakerOptions } from "../resilience/breaker.ts";
import { RetryPolicy, type RetryOptions } from "../resilience/retry.ts";
import { logger } from "../logger.ts";
import { wrap, type CallFunc, type CallWrapper } from "../wrapper/wrapper.ts";

const CLIENT_ID = "go.micro.client";

export interface ClientOptions {
  registry: Registry;
  /** Metadata sent with every call (a service's client sends Micro-From-Service: its name, as go-micro's does). */
  headers?: Headers;
  /** Sends its credentials with every call. */
  auth?: Auth;
  /**
   * "tcp" (default): each node is called over the registered transport its registry metadata
   * names (`transport=tcp`: tsmicro's framed tcp), go-micro's HTTP transport with nodes that name
   * none or one this client does not know (every node answers HTTP). "http": HTTP with every node.
   * Another registered transport's name: like "tcp", and that transport for nodes called by
   * address. A transport registered lazily must be resolved first (`await transports.resolve(name)`;
   * services do). Or a ClientTransport instance, used with every node.
   */
  transport?: "tcp" | "http" | (string & {}) | ClientTransport;
  /** The transports to choose from by name, instead of the registered ones. */
  transports?: Transport[];
  /** "random" (default), "roundrobin", "latency", or a strategy registered in `selectors`. */
  selector?: Strategy;
  /** Extra attempts after the first, on connection failures and timeouts. Default 1. */
  retries?: number;
  /** The wait before each retry and the retry budget per service. Default: go-micro's backoff, no budget. */
  retry?: RetryOptions;
  /** A circuit breaker per node. Default CONNECTION_BREAKER: a node whose connection failed is left out for 2 s. */
  circuitBreaker?: CircuitBreakerOptions;
  /** Milliseconds each attempt may take. Default 5000. */
  requestTimeout?: number;
  /** Connections kept per node. */
  poolSize?: number;
  /** Milliseconds a connection may take to establish, capped further by each call's timeout. Default 5000. */
  dialTimeout?: number;
  /** Calls in flight per pooled tcp connection before calls fail fast with a 503. Default 10000. */
  maxInFlight?: number;
  /** Milliseconds of silence on a tcp connection before the client pings the node. Default 1000. */
  pingInterval?: number;
  /** Milliseconds a tcp connection may stay silent, pings unanswered, before it is dropped and its calls are retried elsewhere. Default 3000. */
  pingTimeout?: number;
  /**
   * How to dial nodes that advertise secure=true (TLS): the CA to verify them by (default: the
   * system's) and, for nodes that require mutual TLS, this client's certificate and key. Given,
   * it is also used with nodes called by address alone.
   */
  tls?: ClientTLS;
  /** Default request Content-Type. */
  contentType?: string;
  maxMessageSize?: number;
  /** Wrappers around each attempt on a node; the first is the outermost. */
  wrapCall?: CallWrapper[];
}

export interface CallOptions {
  retries?: number;
  /** Milliseconds each attempt may take (capped by what is left of `timeout`). */
  requestTimeout?: number;
  /**
   * Milliseconds the whole call may take, every attempt and backoff included: one deadline per
   * call. Default: requestTimeout × (retries + 1).
   */
  timeout?: number;
  /** Aborting it fails the call at once with a 408 (go-micro's answer to a cancelled context); no retry follows. */
  signal?: AbortSignal;
  contentType?: string;
  /** Protobuf types of the request and response (generated clients set them). */
  requestSchema?: DescMessage;
  responseSchema?: DescMessage;
  /** Metadata sent with the call. */
  headers?: Headers;
  /** Call this node address directly, skipping the registry. */
  address?: string;
  filters?: Filter[];
  /** Another strategy than the client's for this call; one that learns from calls (latency) learns only as the client's own. */
  strategy?: Strategy;
  /** Wrappers around each attempt of this call, inside the client's own. */
  wrapCall?: CallWrapper[];
}

let lastTimeoutMs = NaN;
let lastTimeoutHeader = "";

/** go-micro's Timeout header: nanoseconds. The same string while the timeout repeats, so the transport's header-block cache finds it without hashing a new one. */
function timeoutHeader(ms: number): string {
  if (ms !== lastTimeoutMs) {
    lastTimeoutMs = ms;
    lastTimeoutHeader = String(Math.round(ms * 1e6));
  }
  return lastTimeoutHeader;
}

/** Connection failures, 503 and, as go-micro's RetryOnError, any 408 (a server's deadline passing too). */
const isRetryable = (err: MicroError) => err.retryable || err.code === 503 || err.code === 408;

const cancelled = (signal: AbortSignal) => timeout(CLIENT_ID, `call cancelled: ${signal.reason instanceof Error ? signal.reason.message : String(signal.reason)}`);

/** work, or a rejection as soon as signal aborts (the transport's own timeout still ends the abandoned attempt). */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  work.catch(() => {}); // an abandoned attempt's failure is nobody's to handle
  if (signal.aborted) return Promise.reject(cancelled(signal));
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(cancelled(signal));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([work, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

export class Client {
  readonly selector: Selector;
  /** A transport instance given in options, used with every node. */
  private readonly fixed?: ClientTransport;
  /** The transport of nodes called by address alone; "http" means HTTP with every node. */
  private readonly preferred: string;
  private readonly lookup: (name: string) => Transport | undefined;
  /** Each transport's dialer by the name nodes advertise (+tls), made on first use. */
  private readonly dialers = new Map<string, ClientTransport>();
  private readonly transportOpts: ClientTransportOptions;
  private readonly tls?: ClientTLS;
  /** The metadata a node called by address alone is taken to have. */
  private readonly addressMetadata: Record<string, string>;
  readonly options: Required<Pick<ClientOptions, "retries" | "requestTimeout" | "contentType">>;
  /** Sent with every call: the client's headers and credentials. */
  private readonly credentials?: Headers;
  /** The circuit breakers of the nodes this client calls; onStateChange() reports theirs. */
  readonly breakers: NodeBreakers;
  /** When calls retry: backoff and budget. */
  readonly retryPolicy: RetryPolicy;
  /** One attempt on one node: through the node's circuit breaker (and the latency measure) to the transport. */
  private readonly attempt: CallFunc;
  /** The attempt inside the client's call wrappers. */
  private readonly wrapped: CallFunc;
  private readonly wrapCall?: CallWrapper[];

  constructor(opts: ClientOptions) {
    this.breakers = new NodeBreakers(opts.circuitBreaker ?? CONNECTION_BREAKER);
    this.breakers.onStateChange(logBreaker);
    this.selector = new Selector(opts.registry, opts.selector ?? "random", this.breakers);
    this.retryPolicy = new RetryPolicy(opts.retry);
    this.credentials = opts.headers || opts.auth ? { ...opts.headers, ...opts.auth?.credentials() } : undefined;
    const { poolSize, maxMessageSize, dialTimeout, maxInFlight, pingInterval, pingTimeout } = opts;
    this.transportOpts = { poolSize, maxMessageSize, dialTimeout, maxInFlight, pingInterval, pingTimeout };
    this.tls = opts.tls;
    if (opts.transports) {
      const given = new Map(opts.transports.map((t) => [t.name, t]));
      this.lookup = (name) => given.get(name);
    } else this.lookup = (name) => transports.get(name);
    if (typeof opts.transport === "object") this.fixed = opts.transport;
    this.preferred = typeof opts.transport === "string" ? opts.transport.toLowerCase() : "tcp";
    this.addressMetadata = { transport: this.preferred, [SECURE_METADATA]: String(this.tls !== undefined) };
    if (!this.fixed && !this.lookup(this.preferred)) {
      const name = this.preferred;
      const why = transports.has(name) ? `is registered lazily: await transports.resolve("${name}") before creating the client` : `is not registered (known: ${transports.names().join(", ")})`;
      throw new UnknownPluginError("transport", name, transports.names(), `transport "${name}" ${why}`);
    }
    this.options = {
      retries: opts.retries ?? 1,
      requestTimeout: opts.requestTimeout ?? 5000,
      contentType: opts.contentType ?? JSON_TYPE,
    };
    const send: CallFunc = (call) => this.transportFor(call.node).request(call.node.address, call.request, call.timeoutMs);
    // The policies sit innermost, so the caller's wrappers see what they decide (a breaker's 503).
    const learn = this.selector.strategy.wrapCall;
    this.attempt = wrap(send, learn ? [this.breakers.wrapper, learn] : [this.breakers.wrapper]);
    this.wrapped = this.attempt;
    if (opts.wrapCall?.length) {
      this.wrapCall = opts.wrapCall;
      this.wrapped = wrap(this.attempt, opts.wrapCall);
    }
  }

  /** The dialer for node: the transport it advertises if this client knows it, else go-micro's HTTP; over TLS if the node advertises secure=true. */
  private transportFor(node: Node): ClientTransport {
    if (this.fixed) return this.fixed;
    const named = this.preferred === "http" ? "http" : (node.metadata?.transport ?? "http");
    const secure = node.metadata?.[SECURE_METADATA] === "true";
    const key = secure ? `${named}+tls` : named;
    return this.dialers.get(key) ?? this.dial(named, secure, key);
  }

  private dial(named: string, secure: boolean, key: string): ClientTransport {
    const transport = this.lookup(named) ?? this.lookup("http") ?? this.lookup(this.preferred)!;
    const own = secure ? `${transport.name}+tls` : transport.name;
    let dialer = this.dialers.get(own);
    if (!dialer) this.dialers.set(own, (dialer = transport.dial(secure ? { ...this.transportOpts, tls: this.tls ?? {} } : this.transportOpts)));
    this.dialers.set(key, dialer); // an unknown name maps to its fallback's dialer
    return dialer;
  }

  /** Calls service's endpoint ("Service.Method"); rejects with a MicroError. */
  async call<Res = unknown>(service: string, endpoint: string, request: unknown, opts: CallOptions = {}): Promise<Res> {
    const contentType = opts.contentType ?? this.options.contentType;
    const codec = codecFor(contentType);
    if (!codec) throw badRequest(CLIENT_ID, `unsupported Content-Type ${contentType}`);
    let body: Uint8Array;
    try {
      body = codec.encode(request, opts.requestSchema);
    } catch (err) {
      throw badRequest(CLIENT_ID, `cannot encode the request for ${endpoint}: ${(err as Error).message}`);
    }
    const timeoutMs = opts.requestTimeout ?? this.options.requestTimeout;
    // Each attempt adds go-micro's Timeout header, which becomes the server's deadline for the handler.
    const headers: Headers = this.credentials || opts.headers ? { ...this.credentials, ...opts.headers } : {};
    const req = { service, endpoint, contentType: codec.contentType, headers, body };
    const retries = opts.retries ?? this.options.retries;
    const { signal } = opts;
    const budget = opts.timeout ?? timeoutMs * (retries + 1);
    const deadline = performance.now() + budget;
    // Per-call wrappers sit inside the client's; only a call that brings its own builds a chain.
    const wrapped = opts.wrapCall?.length ? wrap(wrap(this.attempt, opts.wrapCall), this.wrapCall) : this.wrapped;

    // A node called by address alone is taken to speak the preferred transport, over TLS if this client has TLS options.
    if (signal?.aborted) throw cancelled(signal);
    let next: Next;
    if (opts.address) next = () => ({ id: opts.address!, address: opts.address!, metadata: this.addressMetadata });
    else {
      const selected = this.next(service, opts);
      next = typeof selected === "function" ? selected : await unlessAborted(selected, signal);
    }
    let failed: Set<string> | undefined; // ids of the nodes that failed, made on the first failure
    let lastError: MicroError | undefined;
    let backoff: (() => number) | undefined; // made on the first retry
    this.retryPolicy.called(service);
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) {
        if (!this.retryPolicy.mayRetry(service)) break; // the service's retry budget is spent: no storm
        const wait = Math.min((backoff ??= this.retryPolicy.delays())(), deadline - performance.now());
        if (wait > 0) await unlessAborted(new Promise((r) => setTimeout(r, wait)), signal);
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        lastError = timeout(CLIENT_ID, `call timeout: the call's ${budget}ms passed after ${attempt} attempt${attempt === 1 ? "" : "s"}: ${lastError?.detail ?? ""}`);
        break;
      }
      // Prefer a node not tried yet; with every node tried, any node again.
      const node: Node | undefined = next(failed) ?? next();
      if (!node) break;
      let res;
      try {
        const attemptMs = Math.min(timeoutMs, Math.ceil(left));
        headers[HEADER.timeout] = timeoutHeader(attemptMs); // what this attempt may take
        res = await unlessAborted(wrapped({ service, endpoint, node, request: req, timeoutMs: attemptMs, attempt }), signal);
      } catch (err) {
        const e = err instanceof MicroError ? err : MicroError.from(err, CLIENT_ID);
        if (signal?.aborted || !isRetryable(e)) throw e; // a cancelled call is a 408 that is not retried
        (failed ??= new Set()).add(node.id);
        lastError = e;
        continue;
      }
      try {
        return (codecFor(res.contentType) ?? codec).decode(res.body, opts.responseSchema) as Res;
      } catch (err) {
        throw internalServerError(CLIENT_ID, `cannot decode the response of ${endpoint}: ${(err as Error).message}`);
      }
    }
    throw lastError ?? notFoundError(service);
  }

  /** The service's nodes: at once when the selector's cache holds them, else once the registry answers. */
  private next(service: string, opts: CallOptions): Next | Promise<Next> {
    try {
      // CallOptions carries filters and strategy
      return this.selector.selectCached(service, opts) ?? this.selector.select(service, opts).catch((err: unknown) => Promise.reject(selectionError(service, err)));
    } catch (err) {
      throw selectionError(service, err);
    }
  }

  async close(): Promise<void> {
    this.selector.close();
    await Promise.all([this.fixed?.close(), ...[...new Set(this.dialers.values())].map((d) => d.close())]);
  }
}

/** A node's breaker opening is worth a warning; the rest of its story, a line of info. */
function logBreaker(change: BreakerStateChange): void {
  const line = `circuit breaker ${change.state} for ${change.service} node ${change.node} (${change.address})`;
  if (change.state === "open") logger.warn(change, line);
  else logger.info(change, line);
}

/** A failed selection as go-micro's client reports it. */
function selectionError(service: string, err: unknown): MicroError {
  return isNotFound(err) ? notFoundError(service) : internalServerError(CLIENT_ID, `error getting next ${service} node: ${(err as Error).message}`);
}

/** The exact error go-micro's client gives when the registry has no node of the service. */
export function notFoundError(service: string): MicroError {
  return internalServerError(CLIENT_ID, `error selecting ${service} node: not found`);
}
