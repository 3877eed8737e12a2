/**
 * Plugins by name: one registration API per kind (registries, brokers, transports here; codecs in
 * codec/codec.ts, selector strategies in selector/selector.ts), which flags, URIs and options
 * resolve against; and plugin references ("etcd", "etcd://127.0.0.1:2379?timeout=500"). The
 * built-ins are registered like any other plugin, lazily, so choosing one imports its file (and
 * client library) and no other; the default broker (http, Node's own modules only) is imported with
 * this file, so a default service loads no plugin file by import() (see `brokers`).
 */
import type { Broker, BrokerOptions } from "../broker/broker.ts";
import type { Registry, RegistryOptions } from "../registry/registry.ts";
import type { Transport } from "../transport/transport.ts";
import { httpTransport } from "../transport/http.ts";
import { tcpTransport } from "../transport/tcp.ts";
import HttpBroker from "../broker/http.ts";

/**
 * One kind of plugin, by name (Moleculer's register/resolve per kind). Names are case-insensitive.
 * Registering a name again replaces the plugin, so a program can swap a built-in.
 */
export class PluginKind<P> {
  private readonly loaded = new Map<string, P>();
  private readonly loaders = new Map<string, () => Promise<P>>();

  constructor(readonly kind: string) {}

  /** Registers a plugin under name. */
  register(name: string, plugin: P): this {
    const key = name.toLowerCase();
    this.loaders.delete(key);
    this.loaded.set(key, plugin);
    return this;
  }

  /**
   * Registers a plugin that is imported only when first resolved (so its client library is never
   * loaded by users of others). Concurrent resolves share one import; a failed one is tried again next time.
   */
  registerLazy(name: string, load: () => Promise<P>): this {
    const key = name.toLowerCase();
    let loading: Promise<P> | undefined;
    const loadOnce = (): Promise<P> =>
      (loading ??= load().then(
        (plugin) => {
          // A register() while it was importing wins.
          if (this.loaders.get(key) === loadOnce) {
            this.loaders.delete(key);
            this.loaded.set(key, plugin);
          }
          return plugin;
        },
        (err: unknown) => {
          loading = undefined;
          throw err;
        },
      ));
    this.loaded.delete(key);
    this.loaders.set(key, loadOnce);
    return this;
  }

  has(name: string): boolean {
    const key = name.toLowerCase();
    return this.loaded.has(key) || this.loaders.has(key);
  }

  names(): string[] {
    return [...new Set([...this.loaded.keys(), ...this.loaders.keys()])].sort();
  }

  /** The plugin, if registered and loaded; no import happens. `name` as registered (lower case): this is the hot-path lookup. */
  get(name: string): P | undefined {
    return this.loaded.get(name);
  }

  /** The plugin, imported first if it was registered lazily. Throws UnknownPluginError naming the known ones. */
  async resolve(name: string): Promise<P> {
    const key = name.toLowerCase();
    const plugin = this.loaded.get(key);
    if (plugin !== undefined) return plugin;
    const load = this.loaders.get(key);
    if (!load) throw new UnknownPluginError(this.kind, name, this.names());
    return load();
  }
}

/** Builds a plugin from its options (the URI's addresses and query options merged in). */
export type PluginFactory<T, O> = (opts: O) => T | Promise<T>;
export type RegistryFactory = PluginFactory<Registry, RegistryOptions>;
export type BrokerFactory = PluginFactory<Broker, BrokerOptions>;

/** A plugin file's default export: a class constructed with its options, made a factory. */
const constructed =
  <T, O>(load: () => Promise<{ default: new (opts: O) => T }>) =>
  async (): Promise<PluginFactory<T, O>> => {
    const Plugin = (await load()).default;
    return (opts) => new Plugin(opts);
  };

// Static import() calls, not a path template, so the compiled package (and any bundler) sees every
// plugin file; each still loads only when chosen.
export const registries = new PluginKind<RegistryFactory>("registry")
  .registerLazy("mdns", constructed(() => import("../registry/mdns.ts")))
  .registerLazy("memory", constructed(() => import("../registry/memory.ts")))
  .registerLazy("etcd", constructed(() => import("../registry/etcd.ts")))
  .registerLazy("consul", constructed(() => import("../registry/consul.ts")))
  .registerLazy("zookeeper", constructed(() => import("../registry/zookeeper.ts")))
  .registerLazy("dns", constructed(() => import("../registry/dns.ts")))
  .registerLazy("nats", constructed(() => import("../registry/nats.ts")));

/**
 * The http broker is registered eagerly: it is the default and uses only Node's modules and the
 * server's own transports, and loading it by import() made its own chunk in a bundled program,
 * whose module resolutions at start-up were enough to make V8 optimize Node's URL-to-path helper,
 * paging in the optimizing compiler (~3.5 MB RSS in an idle service).
 */
export const brokers = new PluginKind<BrokerFactory>("broker")
  .register("http", (opts) => new HttpBroker(opts))
  .registerLazy("memory", constructed(() => import("../broker/memory.ts")))
  .registerLazy("nats", constructed(() => import("../broker/nats.ts")))
  .registerLazy("mqtt", constructed(() => import("../broker/mqtt.ts")))
  .registerLazy("rabbitmq", constructed(() => import("../broker/rabbitmq.ts")))
  .registerLazy("redis", constructed(() => import("../broker/redis.ts")))
  .registerLazy("kafka", constructed(() => import("../broker/kafka.ts")))
  .registerLazy("nsq", constructed(() => import("../broker/nsq.ts")))
  .registerLazy("googlepubsub", constructed(() => import("../broker/googlepubsub.ts")));

/**
 * Transports, both sides (transport/transport.ts): a client calls a node over the one its registry
 * metadata names (`transport=<name>`; go-micro's http for none or an unknown one), and every server
 * serves all of them on its one port, asking them which one a connection's first bytes speak
 * (servedTransports()). Registered eagerly, unlike the others: a client needs http for go-micro
 * nodes anyway, both use only Node's own modules, and a Client is constructed synchronously.
 */
export const transports = new PluginKind<Transport>("transport").register("tcp", tcpTransport).register("http", httpTransport);

/**
 * Every registered transport, imported if registered lazily, in the order a server asks them which
 * one a connection speaks: the others (by name), then tcp frames (first byte < 0x20), then go-micro's
 * HTTP last, since it takes every other first byte (curl, go-micro peers, and the 400s for garbage).
 */
export async function servedTransports(): Promise<Transport[]> {
  const all = await Promise.all(transports.names().map((name) => transports.resolve(name)));
  const rank = (t: Transport) => (t.name === "http" ? 2 : t.name === "tcp" ? 1 : 0);
  return all.sort((a, b) => rank(a) - rank(b));
}

/** URI schemes that name a plugin other than themselves. */
const SCHEME_ALIASES: Record<string, string> = {
  amqp: "rabbitmq",
  amqps: "rabbitmq",
  mqtts: "mqtt",
  rediss: "redis",
  zk: "zookeeper",
  tls: "nats",
};

export interface PluginRef {
  name: string;
  /** host:port list from a URI, if one was given. */
  addresses?: string[];
  /** The URI as written without its query, for clients that want credentials or a scheme. */
  url?: string;
  /** Plugin options from the URI's query (`?jetstream=true&client_id=a` → {jetstream: true, clientId: "a"}). */
  options?: Record<string, string | number | boolean>;
}

/**
 * Splits "name" or "scheme://host:port,host:port?option=value" into a plugin name, its addresses
 * and its options, so a flag can choose a plugin's mode (`--broker=mqtt://127.0.0.1:1883?durable=true`).
 */
export function parsePluginRef(value: string): PluginRef {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^?]*)(?:\?(.*))?$/i.exec(value.trim());
  if (!m) return { name: value.trim().toLowerCase() };
  const scheme = m[1]!.toLowerCase();
  const rest = m[2]!.replace(/\/.*$/, "").replace(/^[^@]*@/, "");
  const addresses = rest ? rest.split(",").filter(Boolean) : undefined;
  const ref: PluginRef = { name: SCHEME_ALIASES[scheme] ?? scheme, addresses, url: `${m[1]}://${m[2]}` };
  if (m[3]) ref.options = queryOptions(m[3]);
  return ref;
}

function queryOptions(query: string): Record<string, string | number | boolean> {
  const options: Record<string, string | number | boolean> = {};
  for (const [key, raw] of new URLSearchParams(query)) {
    const name = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    options[name] = raw === "true" ? true : raw === "false" ? false : /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
  }
  return options;
}

export class UnknownPluginError extends Error {
  constructor(
    readonly kind: string,
    readonly pluginName: string,
    readonly known: readonly string[],
    message = `unknown ${kind} "${pluginName}" (known: ${known.join(", ")})`,
  ) {
    super(message);
    this.name = "UnknownPluginError";
  }
}
