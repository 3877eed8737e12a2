/**
 * A service, as go-micro's micro.NewService: options in code, init() from flags and MICRO_*
 * environment, run() until SIGINT/SIGTERM, stop() from code.
 */
import { randomUUID } from "node:crypto";
import type { DescMessage, DescService } from "@bufbuild/protobuf";
import type { Broker, Subscriber } from "./broker/broker.ts";
import { Client, type CallOptions } from "./client/client.ts";
import { FlagError, fromArgv, fromEnv, usage, type FlagOptions } from "./cmd/flags.ts";
import { createBroker, createRegistry } from "./cmd/plugins.ts";
import { publishEvent, subscribeEvent, type EventHandler, type PublishEventOptions, type SubscribeEventOptions } from "./events.ts";
import { logger } from "./logger.ts";
import type { ServiceImpl } from "./proto/service.ts";
import type { Registry, Service as ServiceRecord } from "./registry/registry.ts";
import type { Strategy } from "./selector/selector.ts";
import { Server, type HandlerFn, type HandlerOptions } from "./server/server.ts";
import type { ClientTransport } from "./transport/transport.ts";

export interface ServiceOptions {
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
  /** Client transport: "tcp" (default) or "http", or an instance. */
  transport?: string | ClientTransport;
  selector?: Strategy;
  /** Seconds a registration stays valid (go-micro RegisterTTL). Default 60. */
  registerTTL?: number;
  /** Seconds between re-registrations (go-micro RegisterInterval). Default 30. */
  registerInterval?: number;
  clientRetries?: number;
  /** Milliseconds per call attempt. Default 5000. */
  clientRequestTimeout?: number;
  clientPoolSize?: number;
  mdnsInterface?: string;
  /** Milliseconds stop() waits for in-flight calls. Default 10000. */
  drainTimeout?: number;
  /** Largest request or response body, in bytes. Default 4 MiB. */
  maxMessageSize?: number;
  /** Milliseconds a peer may stall mid-request before it is cut off. Default 30000. */
  readTimeout?: number;
  /** Install SIGINT/SIGTERM handlers in run(). Default true. */
  handleSignals?: boolean;
}

type Resolved = ServiceOptions & Required<Pick<ServiceOptions, "name" | "version" | "registry" | "broker" | "transport" | "registerTTL" | "registerInterval">>;

const DEFAULTS: Resolved = {
  name: "go.micro.service",
  version: "latest",
  registry: "mdns",
  broker: "http",
  transport: "tcp",
  registerTTL: 60,
  registerInterval: 30,
};

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
    registerTTL: f.registerTTL,
    registerInterval: f.registerInterval,
    clientRetries: f.clientRetries,
    clientRequestTimeout: f.clientRequestTimeout,
    clientPoolSize: f.clientPoolSize,
    mdnsInterface: f.mdnsInterface,
  };
  return withoutUndefined(o);
}

/** So that an option left undefined never hides a default. */
function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

interface PendingSubscription {
  topic: string;
  handler: EventHandler<unknown>;
  opts: SubscribeEventOptions;
}

export class Service {
  private opts: Resolved;
  private initialised = false;
  /** Arguments that were not flags. */
  args: string[] = [];
  readonly id: string;
  private server?: Server;
  private _client?: Client;
  private _registry?: Registry;
  private _broker?: Broker;
  private readonly handlers: Array<(s: Server) => void> = [];
  private readonly pendingSubscriptions: PendingSubscription[] = [];
  private readonly subscribers: Subscriber[] = [];
  private renewTimer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopping?: Promise<void>;
  private resolveRun?: () => void;
  private record?: ServiceRecord;

  constructor(opts: ServiceOptions = {}) {
    this.opts = { ...DEFAULTS, ...withoutUndefined(opts) };
    this.id = randomUUID();
  }

  options(): Readonly<ServiceOptions> {
    return this.opts;
  }

  get name(): string {
    return this.opts.name;
  }

  /**
   * Applies MICRO_* environment and flags over the code's options (flag > env > code > default).
   * A bad flag prints one line naming it and exits 2, as go-micro does; pass exitOnError: false
   * to get the FlagError instead.
   */
  init(argv: string[] = process.argv.slice(2), { exitOnError = true } = {}): this {
    try {
      const env = toServiceOptions(fromEnv());
      const parsed = fromArgv(argv);
      if (parsed.help) {
        process.stdout.write(usage(this.opts.name));
        process.exit(0);
      }
      this.opts = { ...this.opts, ...env, ...toServiceOptions(parsed.options) };
      this.args = parsed.positionals;
      this.initialised = true;
    } catch (err) {
      if (!(err instanceof FlagError) || !exitOnError) throw err;
      process.stderr.write(`${this.opts.name}: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    return this;
  }

  private ensureInit(): void {
    if (!this.initialised) this.init();
  }

  /** The registry, created from the options on first use. */
  async registry(): Promise<Registry> {
    this.ensureInit();
    if (!this._registry) {
      const r = this.opts.registry;
      this._registry =
        typeof r === "string"
          ? await createRegistry(r, { addresses: this.opts.registryAddress, interface: this.opts.mdnsInterface })
          : r;
    }
    return this._registry;
  }

  async broker(): Promise<Broker> {
    this.ensureInit();
    if (!this._broker) {
      const b = this.opts.broker;
      const common = { registry: await this.registry(), registerTTL: this.opts.registerTTL, registerInterval: this.opts.registerInterval };
      if (typeof b === "string") {
        this._broker = await createBroker(b, { ...common, addresses: this.opts.brokerAddress });
      } else {
        await b.init({ ...common, ...b.options() });
        this._broker = b;
      }
    }
    return this._broker;
  }

  async client(): Promise<Client> {
    if (!this._client) {
      const t = this.opts.transport;
      this._client = new Client({
        registry: await this.registry(),
        transport: typeof t === "string" ? (t as "tcp" | "http") : t,
        selector: this.opts.selector,
        retries: this.opts.clientRetries,
        requestTimeout: this.opts.clientRequestTimeout,
        poolSize: this.opts.clientPoolSize,
        maxMessageSize: this.opts.maxMessageSize,
      });
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
    if (this.server) add(this.server);
    else this.handlers.push(add);
    return this;
  }

  async publish(topic: string, message: unknown, opts?: PublishEventOptions): Promise<void> {
    const broker = await this.broker();
    if (!this.running) await broker.connect(); // publishing before (or without) run()
    await publishEvent(broker, topic, message, opts);
  }

  /** Subscribes a typed handler; before run() the subscription starts with the service. */
  async subscribe<T = unknown>(topic: string, handler: EventHandler<T>, opts: SubscribeEventOptions = {}): Promise<void> {
    const pending = { topic, handler: handler as EventHandler<unknown>, opts };
    if (!this.running) {
      this.pendingSubscriptions.push(pending);
      return;
    }
    this.subscribers.push(await subscribeEvent(await this.broker(), topic, handler, opts));
  }

  /** Starts serving and registers; resolves once started. Use run() to also wait for a signal. */
  async start(): Promise<void> {
    this.ensureInit();
    if (this.running) return;
    this.running = new Promise((resolve) => (this.resolveRun = resolve));
    const server = new Server({
      name: this.opts.name,
      address: this.opts.address,
      advertise: this.opts.advertise,
      maxMessageSize: this.opts.maxMessageSize,
      readTimeoutMs: this.opts.readTimeout,
    });
    for (const add of this.handlers.splice(0)) add(server);
    this.server = server;
    logger.info(`Starting [service] ${this.opts.name}`);
    await server.start();
    const broker = await this.broker();
    await broker.connect();
    logger.info(`Broker [${broker}] Connected to ${broker.address()}`);
    for (const p of this.pendingSubscriptions.splice(0)) this.subscribers.push(await subscribeEvent(broker, p.topic, p.handler, p.opts));
    await this.register();
    const interval = this.opts.registerInterval;
    if (interval > 0) {
      this.renewTimer = setInterval(() => {
        this.register().catch((err: Error) => logger.error({ err: err.message }, "re-register failed; will retry next interval"));
      }, interval * 1000);
    }
  }

  /** The registry record of this node. */
  async describe(): Promise<ServiceRecord> {
    if (!this.server) throw new Error("service not started");
    this.record ??= {
      name: this.opts.name,
      version: this.opts.version,
      metadata: {},
      endpoints: this.server.endpoints(),
      nodes: [
        {
          id: `${this.opts.name}-${this.id}`,
          address: this.server.advertisedAddress(),
          metadata: { ...this.opts.metadata, transport: "tcp", protocol: "mucp", server: "tsmicro", broker: String(await this.broker()), registry: String(await this.registry()) },
        },
      ],
    };
    return this.record;
  }

  private async register(): Promise<void> {
    const [record, registry] = [await this.describe(), await this.registry()];
    await registry.register(record, { ttl: this.opts.registerTTL });
    logger.debug(`Registry [${registry}] Registered node: ${record.nodes[0]!.id}`);
  }

  /** start(), then wait until SIGINT/SIGTERM or stop(). */
  async run(): Promise<void> {
    await this.start();
    const node = this.record!.nodes[0]!;
    logger.info(`Registry [${await this.registry()}] Registered node: ${node.id} at ${node.address}`);
    const onSignal = (sig: NodeJS.Signals) => {
      logger.info(`Received signal ${sig}`);
      void this.stop();
    };
    if (this.opts.handleSignals !== false) {
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
    }
    await this.running;
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  /** Deregisters at once, drains in-flight calls, unsubscribes and disconnects. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.renewTimer);
    const registry = await this.registry();
    if (this.record) {
      await registry.deregister(this.record).catch((err: Error) => logger.error({ err: err.message }, "deregister failed"));
      logger.info(`Registry [${registry}] Deregistered node: ${this.record.nodes[0]!.id}`);
    }
    await this.server?.stop(this.opts.drainTimeout ?? 10_000);
    for (const s of this.subscribers.splice(0)) await s.unsubscribe().catch(() => {});
    await this._broker?.disconnect().catch(() => {});
    await this._client?.close();
    await registry.close();
    if (this.server) logger.info(`Stopped [service] ${this.opts.name}`);
    this.resolveRun?.();
  }
}

/** go-micro's micro.NewService. */
export function newService(opts?: ServiceOptions): Service {
  return new Service(opts);
}

export type { DescMessage };
