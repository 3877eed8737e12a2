/**
 * The RPC server: routes "Service.Method" endpoints to async handlers. One port speaks every
 * known transport — the tcp frame protocol (the default, fastest), HTTP (for curl and go-micro
 * tooling), and any registered one: a connection's first bytes tell which (servedTransports()).
 */
import net from "node:net";
import os from "node:os";
import type { DescMessage, DescService } from "@bufbuild/protobuf";
import { codecFor, type Codec } from "../codec/codec.ts";
import { MicroError, badRequest, internalServerError, notFound, serviceUnavailable, timeout, unsupportedMediaType } from "../errors.ts";
import type { Endpoint, Value } from "../registry/registry.ts";
import { servedTransports } from "../cmd/plugins.ts";
import { onePortServer } from "../transport/one-port.ts";
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  HEADER,
  type Answer,
  type Dispatch,
  type Headers,
  type MetricsSource,
  type ServeOptions,
  type ServerTLS,
  type Transport,
  type TransportListener,
  type TransportRequest,
  type TransportResponse,
} from "../transport/transport.ts";
import { defaultLogger, type Logger } from "../logger.ts";
import { DeadlineTimer } from "../deadline-timer.ts";
import { joinHostPort, parseHostPort } from "../address.ts";
import { describeMessage } from "../proto/describe.ts";
import { protoRoutes, type ServiceImpl } from "../proto/service.ts";
import type { CallContext, HandlerFn, HandlerOptions } from "./handler.ts";
import type { Auth } from "../auth/auth.ts";
import { wrap, type HandlerFunc, type HandlerWrapper } from "../wrapper/wrapper.ts";
import { bulkheadWrapper, type BulkheadOptions } from "../resilience/bulkhead.ts";
import { rateLimitWrapper, type RateLimitOptions } from "../resilience/rate-limit.ts";

export type { CallContext, HandlerFn, HandlerOptions } from "./handler.ts";

interface Route extends HandlerOptions {
  fn: HandlerFn;
}

export interface ServerOptions {
  /** The service name: error ids and the Micro-Service header. */
  name: string;
  /** Checks every call's credentials before anything runs (off by default). */
  auth?: Auth;
  /** host:port to bind; port 0 picks a free one. */
  address?: string;
  /** host:port to put in the registry instead of the bound address. */
  advertise?: string;
  maxMessageSize?: number;
  /** Milliseconds a peer may stall in the middle of a request; an HTTP request must be complete within it. */
  readTimeoutMs?: number;
  /** Milliseconds an HTTP request's headers may take from its first byte (slowloris is cut then, with a 408). Default 10000. */
  headerTimeoutMs?: number;
  /** Where the server logs; default: the default logger. */
  logger?: Logger;
  /** Answers GET /metrics on the node's port (Prometheus text); without it that is a 404. */
  metrics?: MetricsSource;
  /** Derives registry endpoint shapes from schemas. Default: describeMessage. */
  describe?: (schema: DescMessage) => Value;
  /** The transports served on the port, asked in order which one a connection speaks. Default: every registered one (servedTransports()). */
  transports?: Transport[];
  /** Serve only TLS (mutual TLS with clientCA): the handshake comes first, then the transport is told inside it. Plaintext callers get a 400 saying so. */
  tls?: ServerTLS;
  /** Wrappers around every handler, given the decoded request; the first is the outermost. */
  wrapHandler?: HandlerWrapper[];
  /** Calls over this rate, per endpoint (or per key), are refused with a 429. Default: no limit. */
  rateLimit?: RateLimitOptions;
  /** Calls beyond these running and queued, per endpoint, are refused with a 503 (clients retry elsewhere). Default: no limit. */
  bulkhead?: BulkheadOptions;
}

const NEVER_ABORTED = new AbortController().signal;

/** "getStudent" → "GetStudent": go-micro endpoint methods are exported Go names. */
const exported = (method: string) => method.charAt(0).toUpperCase() + method.slice(1);

export class Server {
  private readonly routes = new Map<string, Route>();
  private readonly sockets = new Set<net.Socket>();
  private netServer?: net.Server;
  private listeners: Array<{ transport: Transport; listener: TransportListener }> = [];
  private boundAddress?: string;
  private inflight = 0;
  private draining = false;
  private drained?: () => void;
  private readonly deadlines: Deadlines;
  readonly options: Required<Omit<ServerOptions, "advertise" | "describe" | "auth" | "tls" | "wrapHandler" | "transports" | "metrics" | "logger" | "rateLimit" | "bulkhead">> &
    Pick<ServerOptions, "advertise" | "describe" | "auth" | "tls" | "wrapHandler" | "transports" | "metrics" | "logger" | "rateLimit" | "bulkhead">;

  constructor(opts: ServerOptions) {
    this.options = {
      ...opts,
      address: opts.address ?? "127.0.0.1:0",
      maxMessageSize: opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      readTimeoutMs: opts.readTimeoutMs ?? 30_000,
      headerTimeoutMs: opts.headerTimeoutMs ?? 10_000,
      describe: opts.describe ?? describeMessage,
      // The policies sit inside the caller's wrappers, so metrics and traces see the calls they refuse.
      wrapHandler: policyWrappers(opts),
    };
    this.deadlines = new Deadlines(opts.name);
    this.handle("Debug.Health", () => ({ status: "ok" }));
  }

  /**
   * handle("Greeter.Hello", fn) routes one endpoint; handle("Greeter", {hello(){}}) routes every
   * method of the object as "Greeter.Hello"; handle(StudentManager, impl) routes every rpc of a
   * generated service descriptor, typed by it.
   */
  handle(endpoint: string, fn: HandlerFn, opts?: HandlerOptions): this;
  handle(name: string, handlers: object, opts?: Record<string, HandlerOptions>): this;
  handle<S extends DescService>(service: S, impl: ServiceImpl<S>): this;
  handle(name: string | DescService, target: HandlerFn | object, opts?: HandlerOptions | Record<string, HandlerOptions>): this {
    if (typeof name !== "string") {
      for (const route of protoRoutes(name, target)) this.handle(route.endpoint, route.handler, route.options);
      return this;
    }
    if (typeof target === "function") {
      if (!/^[^.\s]+\.[^.\s]+$/.test(name)) throw new TypeError(`endpoint "${name}" must look like "Service.Method"`);
      // Wrapped once here, not per call: without wrappers the route holds the handler itself.
      const wrappers = this.options.wrapHandler;
      const fn = wrappers?.length ? (wrap<HandlerFunc>(async (request, ctx) => (target as HandlerFn)(request, ctx), wrappers) as HandlerFn) : (target as HandlerFn);
      this.routes.set(name, { ...(opts as HandlerOptions), fn });
      return this;
    }
    const perMethod = (opts ?? {}) as Record<string, HandlerOptions>;
    let proto = target;
    const methods = new Set<string>();
    while (proto && proto !== Object.prototype) {
      for (const key of Object.getOwnPropertyNames(proto)) {
        if (key !== "constructor" && typeof (target as Record<string, unknown>)[key] === "function") methods.add(key);
      }
      proto = Object.getPrototypeOf(proto) as object;
    }
    if (methods.size === 0) throw new TypeError(`handler "${name}" has no methods`);
    for (const m of methods) {
      const fn = (target as Record<string, HandlerFn>)[m]!.bind(target);
      this.handle(`${name}.${exported(m)}`, fn, perMethod[m] ?? perMethod[exported(m)]);
    }
    return this;
  }

  private get log(): Logger {
    return this.options.logger ?? defaultLogger();
  }

  /** The endpoints as the registry advertises them. */
  endpoints(): Endpoint[] {
    const describe = this.options.describe;
    return [...this.routes].map(([name, r]) => ({
      name,
      request: r.request ?? (r.requestSchema && describe ? describe(r.requestSchema) : null),
      response: r.response ?? (r.responseSchema && describe ? describe(r.responseSchema) : null),
      metadata: r.metadata ?? {},
    }));
  }

  /** Decodes, runs the handler and encodes; every failure becomes a go-micro error. */
  readonly dispatch: Dispatch = Object.assign((req: TransportRequest) => Promise.resolve(this.answer(req)), { immediate: (req: TransportRequest) => this.answer(req) });

  /** dispatch's work: the answer itself when the handler returned at once, else its promise. */
  private answer(req: TransportRequest): Answer | Promise<Answer> {
    const id = this.options.name;
    if (this.draining) return serviceUnavailable(id, "server is shutting down");
    let denied: MicroError | undefined;
    try {
      denied = this.options.auth?.verify(req.headers, id);
    } catch (err) {
      return this.failed(req, err); // a program's Auth that throws must not throw out of dispatch
    }
    if (denied) return denied;
    const route = this.routes.get(req.endpoint);
    if (!route) return notFound(id, `unknown endpoint ${req.endpoint || "(none)"}: this service serves ${[...this.routes.keys()].join(", ")}`);
    const codec = codecFor(req.contentType);
    if (!codec) return unsupportedMediaType(id, `unsupported Content-Type ${req.contentType}`);
    let input: unknown;
    try {
      input = codec.decode(req.body, route.requestSchema);
    } catch (err) {
      return badRequest(id, `invalid request body for ${req.endpoint}: ${(err as Error).message}`);
    }
    let output: unknown;
    try {
      // go-micro callers send their per-attempt timeout in nanoseconds; past it nobody listens.
      const budgetMs = Number(req.headers[HEADER.timeout] ?? 0) / 1e6;
      const callerGone = req.signal ?? NEVER_ABORTED;
      output =
        budgetMs > 0
          ? this.deadlines.run(route.fn, input, new DeadlineContext(req, callerGone, budgetMs))
          : route.fn(input, { service: req.service, endpoint: req.endpoint, headers: req.headers, signal: callerGone });
    } catch (err) {
      return this.failed(req, err);
    }
    if (!isPromiseLike(output)) return this.encoded(req, codec, route, output);
    return Promise.resolve(output).then(
      (value) => this.encoded(req, codec, route, value),
      (err: unknown) => this.failed(req, err),
    );
  }

  private encoded(req: TransportRequest, codec: Codec, route: Route, output: unknown): Answer {
    try {
      return { contentType: codec.contentType, body: codec.encode(output ?? {}, route.responseSchema) };
    } catch (err) {
      return internalServerError(this.options.name, `cannot encode the response of ${req.endpoint}: ${(err as Error).message}`);
    }
  }

  private failed(req: TransportRequest, err: unknown): MicroError {
    if (!(err instanceof MicroError)) this.log.warn({ endpoint: req.endpoint, err }, "handler failed");
    return MicroError.from(err, this.options.name);
  }

  private track = <T>(work: Promise<T>): Promise<T> => {
    this.inflight++;
    return work.finally(() => {
      this.inflight--;
      if (this.inflight === 0) this.drained?.();
    });
  };

  async start(): Promise<string> {
    const { host, port } = parseHostPort(this.options.address);
    const opts: ServeOptions = {
      serverId: this.options.name,
      maxMessageSize: this.options.maxMessageSize,
      readTimeoutMs: this.options.readTimeoutMs,
      headerTimeoutMs: this.options.headerTimeoutMs,
      track: this.track,
      draining: () => this.draining,
      health: () => ({ status: "ok" }),
      metrics: this.options.metrics,
    };
    const served = this.options.transports ?? (await servedTransports());
    const listeners = (this.listeners = served.map((transport) => ({ transport, listener: transport.listen(this.dispatch, opts) })));
    const server = onePortServer({
      protocols: listeners.map(({ transport, listener }) => ({
        detect: (head) => transport.detect(head),
        serve: (socket, head) => listener.serve(socket, head),
        refuse: (socket, head, err) => listener.refuse(socket, head, err),
      })),
      readTimeoutMs: this.options.readTimeoutMs,
      serverId: this.options.name,
      tls: this.options.tls,
      sockets: this.sockets,
    });
    this.netServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const bound = server.address() as net.AddressInfo;
    this.boundAddress = joinHostPort(bound.address, bound.port);
    this.log.info({ address: this.boundAddress }, `Server [tsmicro] Listening on ${this.boundAddress}`);
    return this.boundAddress;
  }

  /** The address registered for this node. */
  advertisedAddress(): string {
    if (this.options.advertise) return this.options.advertise;
    if (!this.boundAddress) throw new Error("server not started");
    const { host, port } = parseHostPort(this.boundAddress);
    return joinHostPort(host === "0.0.0.0" || host === "::" ? firstExternalAddress() : host, port);
  }

  /** Stops accepting, lets in-flight calls finish (bounded), then closes every connection. */
  async stop(drainTimeoutMs = 10_000): Promise<void> {
    if (!this.netServer) return;
    this.draining = true;
    const server = this.netServer;
    this.netServer = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.inflight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainTimeoutMs);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const { listener } of this.listeners) listener.close();
    for (const s of this.sockets) s.end();
    // Peers that do not close within a moment are cut off.
    const forced = setTimeout(() => {
      for (const s of this.sockets) s.destroy();
    }, 1000);
    await closed;
    clearTimeout(forced);
  }
}

/** The caller's handler wrappers, then the rate limit (cheapest refusal first) and the bulkhead. */
function policyWrappers({ name, wrapHandler, rateLimit, bulkhead }: ServerOptions): HandlerWrapper[] | undefined {
  if (!rateLimit && !bulkhead) return wrapHandler;
  return [...(wrapHandler ?? []), ...(rateLimit ? [rateLimitWrapper(name, rateLimit)] : []), ...(bulkhead ? [bulkheadWrapper(name, bulkhead)] : [])];
}

/** The reason ctx.signal gives when the caller's deadline passes (a handler can tell it from the caller's connection closing). */
const DEADLINE_PASSED = new Error("the caller's deadline passed");

/**
 * A call's context with a deadline. This is on every call's path, so its signal is made only when
 * the handler reads it (most never do): an AbortController and a listener on the caller's signal
 * for every call halved RPC throughput.
 */
class DeadlineContext implements CallContext {
  readonly service: string;
  readonly endpoint: string;
  readonly headers: Headers;
  readonly deadline: number;
  /** performance.now() at which the deadline passes: what the server's deadline timer compares. */
  readonly expiresAt: number;
  expired = false;
  private controller?: AbortController;
  private forward?: () => void;
  /** Fails the call with a 408; set while the handler's promise is pending. */
  reject?: (err: MicroError) => void;

  constructor(
    req: TransportRequest,
    private readonly callerGone: AbortSignal,
    readonly budgetMs: number,
  ) {
    this.service = req.service;
    this.endpoint = req.endpoint;
    this.headers = req.headers;
    // Whole epoch milliseconds from the wall clock, as handlers compare it with Date.now().
    this.deadline = Date.now() + budgetMs;
    this.expiresAt = performance.now() + budgetMs;
  }

  /** Aborts at the deadline, or when the caller goes away. */
  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      if (this.expired) controller.abort(DEADLINE_PASSED);
      else if (this.callerGone.aborted) controller.abort(this.callerGone.reason);
      else this.callerGone.addEventListener("abort", (this.forward = () => controller.abort(this.callerGone.reason)), { once: true });
    }
    return this.controller.signal;
  }

  expire(id: string): void {
    this.expired = true;
    this.controller?.abort(DEADLINE_PASSED);
    this.reject?.(timeout(id, `${this.endpoint} exceeded the caller's ${Math.round(this.budgetMs)}ms deadline`));
  }

  /** A tcp connection's signal outlives its calls: let go of it. */
  release(): void {
    if (this.forward) this.callerGone.removeEventListener("abort", this.forward);
  }
}

/** The deadlines of a server's pending handlers, under one timer. */
class Deadlines {
  private readonly pending = new Set<DeadlineContext>();
  private readonly timer = new DeadlineTimer((now) => {
    let next = Infinity;
    for (const ctx of this.pending) {
      if (ctx.expiresAt <= now) {
        this.remove(ctx);
        ctx.expire(this.id);
      } else next = Math.min(next, ctx.expiresAt);
    }
    return next;
  });

  constructor(private readonly id: string) {}

  /** Runs the handler; rejects with a 408 once the caller's budget is spent. */
  run(fn: HandlerFn, input: unknown, ctx: DeadlineContext): unknown {
    let output: unknown;
    try {
      output = fn(input, ctx);
    } catch (err) {
      ctx.release(); // its signal may already listen on the connection's
      throw err;
    }
    if (!isPromiseLike(output)) {
      ctx.release();
      return output;
    }
    return new Promise((resolve, reject) => {
      ctx.reject = reject;
      this.pending.add(ctx);
      this.timer.include(ctx.expiresAt);
      output.then(
        (value) => {
          this.remove(ctx);
          resolve(value);
        },
        (err: unknown) => {
          this.remove(ctx);
          reject(err);
        },
      );
    });
  }

  private remove(ctx: DeadlineContext): void {
    this.pending.delete(ctx);
    ctx.release();
    if (this.pending.size === 0) this.timer.stop();
  }
}

const isPromiseLike = (value: unknown): value is PromiseLike<unknown> =>
  typeof value === "object" && value !== null && typeof (value as PromiseLike<unknown>).then === "function";

function firstExternalAddress(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}
