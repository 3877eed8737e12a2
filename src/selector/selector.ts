/**
 * Node selection: strategies (random, roundrobin, latency) over a service's nodes, filters
 * (version, metadata), passing over the nodes the client's circuit breakers hold open.
 * Nodes are read from a watch-driven CacheRegistry, as go-micro's selector cache does: no registry
 * round-trip (and no copy of its records) per call, and the last known nodes while the registry is down.
 */
import { CacheRegistry } from "../registry/cache.ts";
import type { Node, Registry, Service } from "../registry/registry.ts";
import { LatencyTracker } from "./latency.ts";

export type Strategy = "random" | "roundrobin" | "latency";
export type Filter = (services: Service[]) => Service[];

export interface SelectOptions {
  filters?: Filter[];
  strategy?: Strategy;
}

/** Picks the next node, skipping the given ids; undefined when none is left. */
export type Next = (exclude?: ReadonlySet<string>) => Node | undefined;

export const filterVersion =
  (version: string): Filter =>
  (services) =>
    services.filter((s) => s.version === version);

export const filterMetadata =
  (key: string, value: string): Filter =>
  (services) =>
    services.map((s) => ({ ...s, nodes: s.nodes.filter((n) => n.metadata?.[key] === value) }));

/** Which nodes selection passes over for now (the client's circuit breakers). */
export interface NodeHealth {
  /** How many nodes may be passed over: while 0, selection does not ask. */
  readonly avoiding: number;
  avoid(node: Node): boolean;
}

export class Selector {
  private readonly counters = new Map<string, number>();
  /** Nodes come from a watch-driven cache: no registry round-trip, and no copy, per call. */
  readonly cache: CacheRegistry;
  /** Response times and calls in flight per node, for the latency strategy; fed by its call wrapper. */
  readonly latency = new LatencyTracker();

  constructor(
    registry: Registry,
    private readonly strategy: Strategy = "random",
    private readonly health?: NodeHealth,
  ) {
    this.cache = registry instanceof CacheRegistry ? registry : new CacheRegistry(registry);
  }

  /** Throws the registry's error (ServiceNotFoundError when there is no such service). */
  async select(service: string, opts: SelectOptions = {}): Promise<Next> {
    const known = await this.cache.snapshot(service);
    let nodes = known.nodes;
    if (opts.filters?.length) {
      let services = known.services as Service[];
      for (const f of opts.filters) services = f(services);
      nodes = services.flatMap((s) => s.nodes);
    }
    const strategy = opts.strategy ?? this.strategy;
    return (exclude) => {
      let pool = nodes;
      // Only when something is excluded or a breaker is open does the pool need filtering.
      const health = this.health?.avoiding ? this.health : undefined;
      if (exclude?.size || health) {
        const allowed = exclude?.size ? nodes.filter((n) => !exclude.has(n.id)) : nodes;
        const healthy = health ? allowed.filter((n) => !health.avoid(n)) : allowed;
        // With every node's breaker open, one is still returned: its breaker fails the call at once.
        pool = healthy.length > 0 ? healthy : allowed;
      }
      if (pool.length === 0) return undefined;
      if (strategy === "latency") return this.latency.pick(pool);
      if (strategy === "roundrobin") {
        const i = this.counters.get(service) ?? 0;
        this.counters.set(service, i + 1);
        return pool[i % pool.length];
      }
      return pool[Math.floor(Math.random() * pool.length)];
    };
  }

  /** Stops the cache; the registry stays open for whoever else uses it. */
  close(): void {
    this.cache.stop();
  }
}
