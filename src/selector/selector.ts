/**
 * Node selection: strategies registered by name (random, roundrobin and latency built in;
 * `selectors` takes more) over a service's nodes, filters (version, metadata), passing over the
 * nodes the client's circuit breakers hold open.
 * Nodes are read from a watch-driven CacheRegistry, as go-micro's selector cache does: no registry
 * round-trip (and no copy of its records) per call, and the last known nodes while the registry is down.
 */
import { CacheRegistry, type Snapshot } from "../registry/cache.ts";
import type { Node, Registry, Service } from "../registry/registry.ts";
import { PluginKind, UnknownPluginError } from "../cmd/plugins.ts";
import type { CallWrapper } from "../wrapper/wrapper.ts";
import { LatencyStrategy } from "./latency.ts";

/** A registered strategy's name. */
export type Strategy = "random" | "roundrobin" | (string & {});
export type Filter = (services: Service[]) => Service[];

/** Picks the node for a call. Each selector (each client) makes its own, so state such as round-robin counters is per client. */
export interface SelectionStrategy {
  /** One of `nodes` (never empty): the service's nodes left after filters, failed nodes and those whose breaker is open. */
  select(nodes: readonly Node[], service: string): Node;
  /** For a strategy that learns from calls (latency): the client runs each attempt with the selector's default strategy through it. */
  wrapCall?: CallWrapper;
}
export type StrategyFactory = () => SelectionStrategy;

const random: StrategyFactory = () => ({ select: (nodes) => nodes[Math.floor(Math.random() * nodes.length)]! });

const roundRobin: StrategyFactory = () => {
  const counters = new Map<string, number>();
  return {
    select(nodes, service) {
      const i = counters.get(service) ?? 0;
      counters.set(service, i + 1);
      return nodes[i % nodes.length]!;
    },
  };
};

/** Selection strategies by name, for `--selector`, ClientOptions.selector and CallOptions.strategy. */
export const selectors = new PluginKind<StrategyFactory>("selector")
  .register("random", random)
  .register("roundrobin", roundRobin)
  .register("latency", () => new LatencyStrategy());

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
  /** This selector's strategy instances by name; the default one is made at construction. */
  private readonly strategies = new Map<string, SelectionStrategy>();
  /** The strategy of calls that name none. */
  readonly strategy: SelectionStrategy;
  /** Nodes come from a watch-driven cache: no registry round-trip, and no copy, per call. */
  readonly cache: CacheRegistry;

  constructor(
    registry: Registry,
    strategy: Strategy = "random",
    private readonly health?: NodeHealth,
  ) {
    this.strategy = this.strategyFor(strategy);
    this.cache = registry instanceof CacheRegistry ? registry : new CacheRegistry(registry);
  }

  private strategyFor(name: string): SelectionStrategy {
    let strategy = this.strategies.get(name);
    if (!strategy) {
      const factory = selectors.get(name.toLowerCase());
      if (!factory) throw new UnknownPluginError("selector", name, selectors.names());
      strategy = factory();
      this.strategies.set(name, strategy);
    }
    return strategy;
  }

  /** Throws the registry's error (ServiceNotFoundError when there is no such service). */
  async select(service: string, opts: SelectOptions = {}): Promise<Next> {
    return this.nextOf(await this.cache.snapshot(service), service, opts);
  }

  /** select() without waiting, for a service the cache holds (the common case: no promise per call); undefined when it must be looked up. */
  selectCached(service: string, opts: SelectOptions = {}): Next | undefined {
    const known = this.cache.cached(service);
    return known && this.nextOf(known, service, opts);
  }

  private nextOf(known: Snapshot, service: string, opts: SelectOptions): Next {
    let nodes = known.nodes;
    if (opts.filters?.length) {
      let services = known.services as Service[];
      for (const f of opts.filters) services = f(services);
      nodes = services.flatMap((s) => s.nodes);
    }
    const strategy = opts.strategy === undefined ? this.strategy : this.strategyFor(opts.strategy);
    return (exclude) => {
      let pool = nodes;
      // Only when something is excluded or a breaker is open does the pool need filtering.
      const health = this.health?.avoiding ? this.health : undefined;
      if (exclude?.size || health) {
        const allowed = exclude?.size ? nodes.filter((n) => !exclude.has(n.id)) : nodes;
        const healthy = health ? allowed.filter((n) => !health.avoid(n)) : allowed;
        // With every node's breaker open one is still returned: its breaker fails the call at once, or tries it.
        pool = healthy.length > 0 ? healthy : allowed;
      }
      if (pool.length === 0) return undefined;
      return strategy.select(pool, service);
    };
  }

  /** Stops the cache; the registry stays open for whoever else uses it. */
  close(): void {
    this.cache.stop();
  }
}
