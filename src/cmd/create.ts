/**
 * Builds a registry, broker or client from a name or URI, or from a service's options, through the
 * plugin kinds of plugins.ts: a name registered there (a built-in, or a plugin a program or package
 * registered) is what a flag, a URI or an option may name.
 */
import type { Broker, BrokerOptions } from "../broker/broker.ts";
import { Client } from "../client/client.ts";
import type { Registry, RegistryOptions } from "../registry/registry.ts";
import type { MdnsRegistryOptions } from "../registry/mdns.ts";
import { toSeconds, type ResolvedOptions } from "./options.ts";
import { DEFAULT_BREAKER } from "../resilience/breaker.ts";
import { HEADER } from "../transport/transport.ts";
import { brokers, parsePluginRef, registries, transports, type PluginFactory, type PluginKind } from "./plugins.ts";

/** Resolves the named plugin and builds it; a URI's addresses and query options join the options given. */
async function create<T, O extends { addresses?: string[]; url?: string }>(kind: PluginKind<PluginFactory<T, O>>, value: string, opts: O): Promise<T> {
  const ref = parsePluginRef(value);
  const factory = await kind.resolve(ref.name);
  return factory({ ...opts, ...ref.options, addresses: opts.addresses ?? ref.addresses, url: ref.url ?? opts.url });
}

/** Builds the registry named by value; O is its plugin's own options type (e.g. `createRegistry<MemoryRegistryOptions>("memory", {isolated: true})`). */
export function createRegistry<O extends RegistryOptions = RegistryOptions>(value: string, opts?: O): Promise<Registry> {
  return create<Registry, RegistryOptions>(registries, value, opts ?? {});
}

/** Builds the broker named by value; O is its plugin's own options type (e.g. `createBroker<NatsBrokerOptions>("nats", {jetstream: true})`). */
export function createBroker<O extends BrokerOptions = BrokerOptions>(value: string, opts?: O): Promise<Broker> {
  return create<Broker, BrokerOptions>(brokers, value, opts ?? {});
}

/** A service's registry: an instance given in code, or built from its name or URI. */
export async function registryFor(o: ResolvedOptions): Promise<Registry> {
  if (typeof o.registry !== "string") return o.registry;
  return createRegistry<MdnsRegistryOptions>(o.registry, { addresses: o.registryAddress, interface: o.mdnsInterface, logger: o.logger });
}

/** A service's broker, given the service's registry (the http broker registers in it). */
export async function brokerFor(o: ResolvedOptions, registry: Registry): Promise<Broker> {
  const common = {
    registry,
    registerTTL: toSeconds(o.registerTTL),
    registerInterval: toSeconds(o.registerInterval),
    auth: o.auth,
    logger: o.logger,
    headerTimeoutMs: o.headerTimeout,
    tls: o.serverTLS,
    clientTLS: o.clientTLS,
  };
  if (typeof o.broker === "string") return createBroker(o.broker, { ...common, addresses: o.brokerAddress });
  await o.broker.init({ ...common, ...o.broker.options() });
  return o.broker;
}

/** A service's client; a transport named in the options is resolved (imported) first. */
export async function clientFor(o: ResolvedOptions, registry: Registry): Promise<Client> {
  if (typeof o.transport === "string") await transports.resolve(o.transport);
  return new Client({
    registry,
    transport: o.transport,
    selector: o.selector,
    headers: { [HEADER.fromService]: o.name },
    retries: o.clientRetries,
    retry: { budget: o.clientRetryBudget, backoff: o.clientRetryBackoff },
    circuitBreaker: o.clientCircuitBreaker === true ? DEFAULT_BREAKER : o.clientCircuitBreaker || undefined,
    requestTimeout: o.clientRequestTimeout,
    poolSize: o.clientPoolSize,
    dialTimeout: o.clientDialTimeout,
    maxInFlight: o.clientMaxInFlight,
    maxMessageSize: o.maxMessageSize,
    auth: o.auth,
    tls: o.clientTLS,
    wrapCall: o.wrapCall,
  });
}
