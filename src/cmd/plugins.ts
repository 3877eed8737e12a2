/**
 * Plugin names and references ("etcd", "etcd://127.0.0.1:2379?timeout=500"), and the lazy import
 * of a plugin's optional client library. Plugins import this file; cmd/create.ts, which imports
 * the plugins, builds them.
 */
import { readFileSync } from "node:fs";

export const REGISTRY_NAMES = ["mdns", "memory", "etcd", "consul", "zookeeper", "dns", "nats"] as const;
export const BROKER_NAMES = ["http", "memory", "nats", "mqtt", "rabbitmq", "redis", "kafka", "nsq", "googlepubsub"] as const;
export const SELECTOR_NAMES = ["random", "roundrobin"] as const;

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
