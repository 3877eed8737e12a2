/**
 * Plugin resolution by name or URI ("etcd", "etcd://127.0.0.1:2379").
 * Every plugin is one file, registry/<name>.ts or broker/<name>.ts, whose default export is a
 * class constructed with its options; it is imported only when chosen, so optional client
 * libraries are never loaded by users of other plugins.
 */
import { readFileSync } from "node:fs";
import type { Broker, BrokerOptions } from "../broker/broker.ts";
import type { Registry, RegistryOptions } from "../registry/registry.ts";

type Ctor<T, O> = new (opts?: O) => T;
type Loader<T, O> = () => Promise<{ default: Ctor<T, O> }>;

export const REGISTRY_NAMES = ["mdns", "memory", "etcd", "consul", "zookeeper", "dns", "nats"] as const;
export const BROKER_NAMES = ["http", "memory", "nats", "mqtt", "rabbitmq", "redis", "kafka", "nsq", "googlepubsub"] as const;
export const TRANSPORT_NAMES = ["tcp", "http"] as const;
export const SELECTOR_NAMES = ["random", "roundrobin"] as const;

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
  ) {
    super(`unknown ${kind} "${pluginName}" (known: ${known.join(", ")})`);
    this.name = "UnknownPluginError";
  }
}

export class MissingPackageError extends Error {
  /** The peer dependency range tsmicro is tested with, e.g. "^5.16.0". */
  readonly range: string | undefined;
  constructor(
    readonly pkg: string,
    plugin: string,
    options?: ErrorOptions,
  ) {
    const range = peerRange(pkg);
    super(`the ${plugin} plugin needs the "${pkg}" package: npm install ${range ? `${pkg}@${range}` : pkg}`, options);
    this.name = "MissingPackageError";
    this.range = range;
  }
}

/** The range of a client library in tsmicro's own peerDependencies (../../package.json from src/ and dist/ alike). */
function peerRange(pkg: string): string | undefined {
  try {
    const manifest = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { peerDependencies?: Record<string, string> };
    return manifest.peerDependencies?.[pkg];
  } catch {
    return undefined;
  }
}

/** Imports a plugin's client library, turning "not installed" into one line naming the package. */
export async function importOptional<T>(pkg: string, plugin: string): Promise<T> {
  try {
    return (await import(pkg)) as T;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const missing = (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") && (err as Error).message.includes(`'${pkg}'`);
    if (missing) throw new MissingPackageError(pkg, plugin, { cause: err });
    throw err;
  }
}

async function load<T, O>(kind: "registry" | "broker", loaders: Record<string, Loader<T, O>>, ref: PluginRef): Promise<Ctor<T, O>> {
  const loader = Object.hasOwn(loaders, ref.name) ? loaders[ref.name] : undefined;
  if (!loader) throw new UnknownPluginError(kind, ref.name, Object.keys(loaders));
  return (await loader()).default;
}

export async function createRegistry(value: string, opts: RegistryOptions = {}): Promise<Registry> {
  const ref = parsePluginRef(value);
  const RegistryClass = await load<Registry, RegistryOptions>("registry", REGISTRIES, ref);
  return new RegistryClass({ ...opts, ...ref.options, addresses: opts.addresses ?? ref.addresses, url: ref.url ?? opts.url });
}

export async function createBroker(value: string, opts: BrokerOptions = {}): Promise<Broker> {
  const ref = parsePluginRef(value);
  const BrokerClass = await load<Broker, BrokerOptions>("broker", BROKERS, ref);
  return new BrokerClass({ ...opts, ...ref.options, addresses: opts.addresses ?? ref.addresses, url: ref.url ?? opts.url });
}
