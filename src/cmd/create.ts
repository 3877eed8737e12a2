/**
 * Builds a registry, broker or client from a name or URI, or from a service's options. Every plugin is one file, registry/<name>.ts or
 * broker/<name>.ts, whose default export is a class constructed with its options; it is imported
 * only when chosen, so optional client libraries are never loaded by users of other plugins.
 */
import type { Broker, BrokerOptions } from "../broker/broker.ts";
import { Client } from "../client/client.ts";
import type { Registry, RegistryOptions } from "../registry/registry.ts";
import { toSeconds, type ResolvedOptions } from "./options.ts";
import { BROKER_NAMES, REGISTRY_NAMES, UnknownPluginError, parsePluginRef } from "./plugins.ts";

type Ctor<T, O> = new (opts?: O) => T;
type Loader<T, O> = () => Promise<{ default: Ctor<T, O> }>;

// Static import() calls, not a path template, so the compiled package (and any bundler) sees every
// plugin file; each still loads only when chosen. Typed by the name lists, not inferred, so the
// public declarations never reach into client libraries a user may not have installed.
const REGISTRIES: Record<(typeof REGISTRY_NAMES)[number], Loader<Registry, RegistryOptions>> = {
  mdns: () => import("../registry/mdns.ts"),
  memory: () => import("../registry/memory.ts"),
  etcd: () => import("../registry/etcd.ts"),
  consul: () => import("../registry/consul.ts"),
  zookeeper: () => import("../registry/zookeeper.ts"),
  dns: () => import("../registry/dns.ts"),
  nats: () => import("../registry/nats.ts"),
};

const BROKERS: Record<(typeof BROKER_NAMES)[number], Loader<Broker, BrokerOptions>> = {
  http: () => import("../broker/http.ts"),
  memory: () => import("../broker/memory.ts"),
  nats: () => import("../broker/nats.ts"),
  mqtt: () => import("../broker/mqtt.ts"),
  rabbitmq: () => import("../broker/rabbitmq.ts"),
  redis: () => import("../broker/redis.ts"),
  kafka: () => import("../broker/kafka.ts"),
  nsq: () => import("../broker/nsq.ts"),
  googlepubsub: () => import("../broker/googlepubsub.ts"),
};

/** Imports the named plugin and constructs it; a URI's addresses and query options join the options given. */
async function create<T, O extends { addresses?: string[]; url?: string }>(
  kind: "registry" | "broker",
  loaders: Record<string, Loader<T, O>>,
  value: string,
  opts: O,
): Promise<T> {
  const ref = parsePluginRef(value);
  const loader = Object.hasOwn(loaders, ref.name) ? loaders[ref.name] : undefined;
  if (!loader) throw new UnknownPluginError(kind, ref.name, Object.keys(loaders));
  const Plugin = (await loader()).default;
  return new Plugin({ ...opts, ...ref.options, addresses: opts.addresses ?? ref.addresses, url: ref.url ?? opts.url } as O);
}

export function createRegistry(value: string, opts: RegistryOptions = {}): Promise<Registry> {
  return create("registry", REGISTRIES, value, opts);
}

export function createBroker(value: string, opts: BrokerOptions = {}): Promise<Broker> {
  return create("broker", BROKERS, value, opts);
}

/** A service's registry: an instance given in code, or built from its name or URI. */
export async function registryFor(o: ResolvedOptions): Promise<Registry> {
  if (typeof o.registry !== "string") return o.registry;
  return createRegistry(o.registry, { addresses: o.registryAddress, interface: o.mdnsInterface });
}

/** A service's broker, given the service's registry (the http broker registers in it). */
export async function brokerFor(o: ResolvedOptions, registry: Registry): Promise<Broker> {
  const common = { registry, registerTTL: toSeconds(o.registerTTL), registerInterval: toSeconds(o.registerInterval), auth: o.auth, headerTimeoutMs: o.headerTimeout, tls: o.serverTLS, clientTLS: o.clientTLS };
  if (typeof o.broker === "string") return createBroker(o.broker, { ...common, addresses: o.brokerAddress });
  await o.broker.init({ ...common, ...o.broker.options() });
  return o.broker;
}

export function clientFor(o: ResolvedOptions, registry: Registry): Client {
  return new Client({
    registry,
    transport: o.transport,
    selector: o.selector,
    retries: o.clientRetries,
    requestTimeout: o.clientRequestTimeout,
    poolSize: o.clientPoolSize,
    dialTimeout: o.clientDialTimeout,
    maxInFlight: o.clientMaxInFlight,
    maxMessageSize: o.maxMessageSize,
    auth: o.auth,
    tls: o.clientTLS,
  });
}
