/**
 * A service, as go-micro's micro.NewService: options in code, init() from flags and MICRO_*
 * environment (only when the program calls it), run() until SIGINT/SIGTERM, stop() from code.
 * This file is the lifecycle; options are cmd/options.ts, building the plugins cmd/create.ts.
 */
import { randomUUID } from "node:crypto";
import type { DescMessage, DescService } from "@bufbuild/protobuf";
import type { Broker, Subscriber } from "./broker/broker.ts";
import { Client, type CallOptions } from "./client/client.ts";
import { brokerFor, clientFor, registryFor } from "./cmd/create.ts";
import { applyProcessOptions, resolveOptions, toSeconds, type Hook, type InitOptions, type ResolvedOptions, type ServiceOptions } from "./cmd/options.ts";
import { MissingPackageError } from "./cmd/optional-package.ts";
import { StartupError } from "./errors.ts";
import { encodeEvent, subscribeEvent, type EventHandler, type PublishEventOptions, type SubscribeEventOptions } from "./events.ts";
import { defaultLogger, type Logger } from "./logger.ts";
import { NodeObservability } from "./observability/observability.ts";
import type { ServiceImpl } from "./proto/service.ts";
import { describeMessage } from "./proto/describe.ts";
import type { Endpoint, Registry, Service as ServiceRecord } from "./registry/registry.ts";
import { Server, type HandlerFn, type HandlerOptions } from "./server/server.ts";
import { SECURE_METADATA } from "./transport/transport.ts";
import type { MetricsSource } from "./transport/transport.ts";
import { wrap, type PublishFunc } from "./wrapper/wrapper.ts";

/** How soon a failed re-register is tried again (at most the register interval). */
const RENEW_RETRY_MS = 1000;

interface Subscription {
  topic: string;
  handler: EventHandler<unknown>;
  opts: SubscribeEventOptions;
  /** The broker's subscriber while the service runs. */
  active?: Subscriber;
}

/** What subscribe() returns: unsubscribe() ends it, before or after start(). */
export interface ServiceSubscription {
  readonly topic: string;
  unsubscribe(): Promise<void>;
}

export class Service {
  private opts: ResolvedOptions;
  /** Arguments that were not flags. */
  args: string[] = [];
  readonly id: string;
  private server?: Server;
  private _client?: Client;
  private _registry?: Registry;
  private _broker?: Broker;
  /** The broker's publish behind the service's publish wrappers, made with the broker. */
  private publisher?: PublishFunc;
  private readonly handlers: Array<(s: Server) => void> = [];
  private readonly subscriptions: Subscription[] = [];
  private renewTimer?: NodeJS.Timeout;
  /** The re-register in progress, if any. */
  private renewal?: Promise<void>;
  private running?: Promise<void>;
  private stopping?: Promise<void>;
  private resolveRun?: () => void;
  private record?: ServiceRecord;
  /** Whether the registry accepted this node, so a failed start() does not deregister it. */
  private registered = false;
  /** This node's tracing and metrics, made on first use (after init() named the node). */
  private observability?: NodeObservability;
  /** The options with the node's tracing and metrics wrappers in front of the program's. */
  private observed?: ResolvedOptions;

  constructor(opts: ServiceOptions = {}) {
    this.opts = resolveOptions(opts);
    this.id = randomUUID();
  }

  options(): Readonly<ServiceOptions> {
    return this.opts;
  }

  get name(): string {
    return this.opts.name;
  }

  /** This service's logger: ServiceOptions.logger, or the default one. */
  get logger(): Logger {
    return this.opts.logger ?? defaultLogger();
  }

  /** The registry id of this node. */
  get nodeId(): string {
    return `${this.opts.name}-${this.id}`;
  }

  /** The options the service builds its parts with: its own tracing and metrics wrappers first. */
  private wired(): ResolvedOptions {
    if (!this.observed) {
      this.observability = new NodeObservability(this.opts, { service: this.opts.name, nodeId: this.nodeId }, () => String(this._broker ?? ""));
      this.observed = this.observability.wrap(this.opts);
    }
    return this.observed;
  }

  /**
   * Applies MICRO_* environment and flags over the code's options (flag > env > code > default).
   * Nothing is read from the process unless the program calls this. A bad flag or variable throws
   * a FlagError (one line naming it), --help a HelpRequested carrying the usage text; runMain()
   * turns either into go-micro's behaviour (exit 2, or the usage and exit 0). With allowUnknown,
   * flags that are not tsmicro's (and --help) are left in `args` for the program's own parser.
   */
  init(argv: string[] = process.argv.slice(2), opts: InitOptions = {}): this {
    ({ options: this.opts, args: this.args } = applyProcessOptions(this.opts, argv, opts));
    this.observed = undefined; // the node's name or switches may have changed
    return this;
  }

  /** The registry, created from the options on first use. */
  async registry(): Promise<Registry> {
    this._registry ??= await registryFor(this.opts);
    return this._registry;
  }

  async broker(): Promise<Broker> {
    if (!this._broker) {
      const broker = await brokerFor(this.opts, await this.registry());
      this._broker ??= broker;
      this.publisher = wrap<PublishFunc>((p) => this._broker!.publish(p.topic, p.message), this.wired().wrapPublish);
    }
    return this._broker;
  }

  async client(): Promise<Client> {
    if (!this._client) {
      const client = await clientFor(this.wired(), await this.registry());
      if (this._client) await client.close(); // a concurrent call made one first
      else this._client = client;
    }
    return this._client;
  }

  /** go-micro's client.Call: calls another service's endpoint. */
  async call<Res = unknown>(service: string, endpoint: string, request: unknown, opts?: CallOptions): Promise<Res> {
    return (await this.client()).call<Res>(service, endpoint, request, opts);
  }

  /**
   * Routes an endpoint ("Greeter.Hello", fn), every method of an object ("Greeter", obj), or every
   * rpc of a generated service descriptor (StudentManager, impl typed by it).
   */
  handle(endpoint: string, fn: HandlerFn, opts?: HandlerOptions): this;
  handle(name: string, handlers: object, opts?: Record<string, HandlerOptions>): this;
  handle<S extends DescService>(service: S, impl: ServiceImpl<S>): this;
  handle(name: string | DescService, target: HandlerFn | object, opts?: HandlerOptions | Record<string, HandlerOptions>): this {
    const add = (s: Server) => (s.handle as (n: unknown, t: unknown, o: unknown) => Server)(name, target, opts);
    this.handlers.push(add); // kept, so a start() retried after a failure serves it too
    if (this.server) add(this.server);
    this.readvertise();
    return this;
  }

  /** Advertises changed endpoints (handlers, subscriptions) now rather than at the next renewal. */
  private readvertise(): void {
    if (!this.registered) return;
    this.record = undefined;
    this.register().catch((err: Error) => this.logger.error({ err: err.message }, "re-register with the new endpoints failed; will retry next interval"));
  }

  async publish(topic: string, message: unknown, opts?: PublishEventOptions): Promise<void> {
    const broker = await this.broker();
    if (!this.running) await broker.connect(); // publishing before (or without) run()
    await this.publisher!({ topic, message: encodeEvent(topic, message, opts) });
  }

  /** Subscribes a typed handler; before start() the subscription starts with the service. */
  async subscribe<T = unknown>(topic: string, handler: EventHandler<T>, opts: SubscribeEventOptions = {}): Promise<ServiceSubscription> {
    const sub: Subscription = { topic, handler: handler as EventHandler<unknown>, opts };
    const forget = () => {
      const index = this.subscriptions.indexOf(sub);
      if (index >= 0) this.subscriptions.splice(index, 1);
      this.readvertise();
    };
    this.subscriptions.push(sub);
    if (this.running) {
      try {
        sub.active = await subscribeEvent(await this.broker(), topic, handler, { logger: this.logger, ...opts }, this.wired().wrapSubscriber);
      } catch (err) {
        forget();
        throw err;
      }
      this.readvertise();
    }
    return {
      topic,
      unsubscribe: async () => {
        forget();
        const active = sub.active;
        sub.active = undefined;
        await active?.unsubscribe();
      },
    };
  }

  /**
   * Starts serving and registers; resolves once started. Use run() to also wait for a signal.
   * A failure is a StartupError naming the step, and whatever had started is stopped again, so
   * start() may be retried.
   */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = new Promise((resolve) => (this.resolveRun = resolve));
    try {
      await this.startParts();
    } catch (err) {
      await this.shutdown().catch(() => {});
      this.running = this.stopping = this.record = this._registry = this._broker = this._client = this.server = undefined;
      this.registered = false;
      throw err instanceof StartupError ? err : new StartupError(`${this.opts.name}: ${(err as Error).message}`, { cause: err });
    }
  }

  private async startParts(): Promise<void> {
    await this.step("a beforeStart hook failed", () => runHooks(this.opts.beforeStart));
    const server = new Server({
      name: this.opts.name,
      address: this.opts.address,
      advertise: this.opts.advertise,
      maxMessageSize: this.opts.maxMessageSize,
      readTimeoutMs: this.opts.readTimeout,
      headerTimeoutMs: this.opts.headerTimeout,
      tls: this.opts.serverTLS,
      auth: this.opts.auth,
      wrapHandler: this.wired().wrapHandler,
      metrics: this.metricsSource(),
      logger: this.logger,
      rateLimit: this.opts.serverRateLimit,
      bulkhead: this.opts.serverBulkhead,
    });
    for (const add of this.handlers) add(server);
    this.server = server;
    this.logger.info(`Starting [service] ${this.opts.name}`);
    await this.step(`cannot listen on ${this.opts.address ?? "127.0.0.1:0"}`, () => server.start());
    const registry = await this.step(`cannot create the registry "${String(this.opts.registry)}"`, () => this.registry());
    const broker = await this.step(`cannot create the broker "${String(this.opts.broker)}"`, () => this.broker());
    await this.step(`cannot connect to the ${broker} broker at ${broker.address()}`, () => broker.connect());
    this.observability?.metrics?.brokerConnected(true);
    this.logger.info(`Broker [${broker}] Connected to ${broker.address()}`);
    for (const sub of this.subscriptions) {
      sub.active ??= await this.step(`cannot subscribe to ${sub.topic}`, () => subscribeEvent(broker, sub.topic, sub.handler, { logger: this.logger, ...sub.opts }, this.wired().wrapSubscriber));
    }
    await this.step(`cannot register with the ${registry} registry`, () => this.register());
    this.renewAfter(this.opts.registerInterval);
    await this.step("an afterStart hook failed", () => runHooks(this.opts.afterStart));
  }

  /**
   * Re-registers every registerInterval, one register at a time. While the registry cannot be
   * reached it tries every RENEW_RETRY_MS instead, so a node is back within about a second of the
   * registry's return, however long its interval (its lease or check may have lapsed meanwhile).
   */
  private renewAfter(delayMs: number): void {
    this.renewTimer = setTimeout(() => {
      this.renewal = this.register().then(
        () => this.opts.registerInterval,
        (err: Error) => {
          const retry = Math.min(this.opts.registerInterval, RENEW_RETRY_MS);
          this.logger.error({ err: err.message }, `re-register failed; retrying in ${retry} ms`);
          return retry;
        },
      ).then((next) => {
        this.renewal = undefined;
        if (this.running && !this.stopping) this.renewAfter(next);
      });
    }, delayMs);
  }

  /** What GET /metrics on the node's port answers, unless metrics are off. */
  private metricsSource(): MetricsSource | undefined {
    const metrics = (this.wired(), this.observability?.metrics);
    return metrics && (() => metrics.exposition());
  }

  /** Runs one start-up step; its failure becomes one line saying which step, with the cause. */
  private async step<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      // A missing client library says all there is to say (which package, which range).
      const detail = err instanceof MissingPackageError ? err.message : `${what}: ${(err as Error).message}`;
      throw new StartupError(`${this.opts.name}: ${detail}`, { cause: err });
    }
  }

  /** The registry record of this node. */
  async describe(): Promise<ServiceRecord> {
    if (!this.server) throw new Error("service not started");
    this.record ??= {
      name: this.opts.name,
      version: this.opts.version,
      metadata: {},
      endpoints: [...this.server.endpoints(), ...this.subscriptions.map(subscriberEndpoint)],
      nodes: [
        {
          id: this.nodeId,
          address: this.server.advertisedAddress(),
          metadata: { ...this.opts.metadata, transport: this.advertisedTransport(), [SECURE_METADATA]: String(this.opts.serverTLS !== undefined), protocol: "mucp", server: "tsmicro", broker: String(await this.broker()), registry: String(await this.registry()) },
        },
      ],
    };
    return this.record;
  }

  /** The transport clients should call this node over: the one chosen, except that "http" (a client's choice to speak only HTTP) leaves tcp advertised. */
  private advertisedTransport(): string {
    const t = this.opts.transport;
    return typeof t === "string" && t !== "http" ? t : "tcp";
  }

  private async register(): Promise<void> {
    const [record, registry] = [await this.describe(), await this.registry()];
    try {
      await registry.register(record, { ttl: toSeconds(this.opts.registerTTL) });
    } catch (err) {
      this.observability?.metrics?.registered(false);
      throw err;
    }
    this.observability?.metrics?.registered(true);
    this.registered = true;
    this.logger.debug(`Registry [${registry}] Registered node: ${record.nodes[0]!.id}`);
  }

  /** start(), then wait until SIGINT/SIGTERM or stop(). */
  async run(): Promise<void> {
    await this.start();
    const node = this.record!.nodes[0]!;
    this.logger.info(`Registry [${await this.registry()}] Registered node: ${node.id} at ${node.address}`);
    const onSignal = (sig: NodeJS.Signals) => {
      this.logger.info(`Received signal ${sig}`);
      this.stop().catch((err: Error) => this.logger.error({ err: err.message }, "stop failed"));
    };
    if (this.opts.handleSignals !== false) {
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
    }
    await this.running;
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  /**
   * Runs the beforeStop hooks, deregisters at once, drains in-flight calls, unsubscribes,
   * disconnects, then runs the afterStop hooks. A hook's failure does not stop the rest: it is
   * stop()'s rejection at the end, as in go-micro.
   */
  stop(): Promise<void> {
    this.stopping ??= this.stopWithHooks();
    return this.stopping;
  }

  private async stopWithHooks(): Promise<void> {
    const started = this.running !== undefined;
    const failures: unknown[] = [];
    if (started) await runHooks(this.opts.beforeStop, failures);
    await this.shutdown();
    if (started) await runHooks(this.opts.afterStop, failures);
    this.resolveRun?.();
    if (failures.length > 0) throw failures[0];
  }

  private async shutdown(): Promise<void> {
    clearTimeout(this.renewTimer);
    await this.renewal; // a renewal that lands after the deregister would list this node again
    const registry = this._registry;
    if (this.record && registry && this.registered) {
      await registry.deregister(this.record).catch((err: Error) => this.logger.error({ err: err.message }, "deregister failed"));
      this.logger.info(`Registry [${registry}] Deregistered node: ${this.record.nodes[0]!.id}`);
    }
    await this.server?.stop(this.opts.drainTimeout ?? 10_000);
    for (const sub of this.subscriptions) {
      await sub.active?.unsubscribe().catch(() => {});
      sub.active = undefined;
    }
    await this._broker?.disconnect().catch(() => {});
    this.observability?.metrics?.brokerConnected(false);
    await this._client?.close();
    await registry?.close();
    if (this.server) this.logger.info(`Stopped [service] ${this.opts.name}`);
  }
}

/**
 * A subscription as go-micro advertises a function subscriber: endpoint "Func" with metadata
 * {topic, subscriber: "true"} and the message's shape, so the registry tells who listens to a topic.
 */
function subscriberEndpoint(sub: Subscription): Endpoint {
  return {
    name: "Func",
    request: sub.opts.schema ? describeMessage(sub.opts.schema) : null,
    response: null,
    metadata: { topic: sub.topic, subscriber: "true" },
  };
}

/** Runs hooks in order. With `failures`, a failing hook is recorded there and the rest still run; without, the first failure throws. */
async function runHooks(hooks: readonly Hook[] | undefined, failures?: unknown[]): Promise<void> {
  for (const hook of hooks ?? []) {
    try {
      await hook();
    } catch (err) {
      if (!failures) throw err;
      failures.push(err);
    }
  }
}

export type { Duration, Hook, InitOptions, ServiceOptions } from "./cmd/options.ts";

/** go-micro's micro.NewService. */
export function newService(opts?: ServiceOptions): Service {
  return new Service(opts);
}

export type { DescMessage };
