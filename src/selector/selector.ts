/**
 * Node selection: strategies (random, roundrobin) over a service's nodes, filters (version,
 * metadata) and a short memory of nodes that just failed, so retries move elsewhere.
 * A service's nodes are looked up once and then kept until the registry's watch reports a change
 * to that service (or the watch ends), as go-micro's selector cache does: no registry round-trip
 * (and no copy of its records) per call.
 */
import type { Node, Registry, Service, Watcher } from "../registry/registry.ts";

export type Strategy = "random" | "roundrobin";
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

/** How long a node that refused a connection is passed over (it may be restarting, or dead). */
const PENALTY_MS = 2000;

interface Known {
  services: Service[];
  /** Every node of every version, for selections without filters. */
  nodes: Node[];
}

export class Selector {
  private readonly counters = new Map<string, number>();
  private readonly penalised = new Map<string, number>();
  /** Lookups by service name; failed lookups (not found, registry down) are never kept. */
  private readonly known = new Map<string, Promise<Known>>();
  private watcher?: Watcher;

  constructor(
    readonly registry: Registry,
    private readonly strategy: Strategy = "random",
  ) {}

  /** Throws the registry's error (ServiceNotFoundError when there is no such service). */
  async select(service: string, opts: SelectOptions = {}): Promise<Next> {
    const known = await this.lookup(service);
    let nodes = known.nodes;
    if (opts.filters?.length) {
      let services = known.services;
      for (const f of opts.filters) services = f(services);
      nodes = services.flatMap((s) => s.nodes);
    }
    const strategy = opts.strategy ?? this.strategy;
    return (exclude) => {
      let pool = nodes;
      // Only when something is excluded or penalised does the pool need filtering.
      if (exclude?.size || this.penalised.size > 0) {
        const now = Date.now();
        for (const [id, until] of this.penalised) if (until <= now) this.penalised.delete(id);
        const allowed = exclude?.size ? nodes.filter((n) => !exclude.has(n.id)) : nodes;
        const healthy = allowed.filter((n) => !this.penalised.has(n.id));
        // If every node failed recently, trying one again beats giving up.
        pool = healthy.length > 0 ? healthy : allowed;
      }
      if (pool.length === 0) return undefined;
      if (strategy === "roundrobin") {
        const i = this.counters.get(service) ?? 0;
        this.counters.set(service, i + 1);
        return pool[i % pool.length];
      }
      return pool[Math.floor(Math.random() * pool.length)];
    };
  }

  private lookup(service: string): Promise<Known> {
    let known = this.known.get(service);
    if (!known) {
      known = this.registry.getService(service).then((services) => ({ services, nodes: services.flatMap((s) => s.nodes) }));
      // Without a watch nothing would tell us the nodes changed: then every call looks them up.
      if (this.watchRegistry()) {
        this.known.set(service, known);
        known.catch(() => this.known.delete(service));
      }
    }
    return known;
  }

  /** Forgets a service whenever the registry reports a change to it, and everything if the watch ends; false if it cannot watch. */
  private watchRegistry(): boolean {
    if (this.watcher) return true;
    let watcher: Watcher;
    try {
      watcher = this.registry.watch();
    } catch {
      return false;
    }
    this.watcher = watcher;
    void (async () => {
      try {
        for await (const event of watcher) this.known.delete(event.service.name);
      } catch {
        // a failed watch ends like a stopped one
      } finally {
        if (this.watcher === watcher) this.watcher = undefined;
        this.known.clear();
      }
    })();
    return true;
  }

  /** Stops watching the registry. */
  close(): void {
    this.watcher?.stop();
    this.watcher = undefined;
    this.known.clear();
  }

  /** Remembers a node whose connection failed, so the next picks avoid it for a while. */
  mark(node: Node, failed: boolean): void {
    if (failed) this.penalised.set(node.id, Date.now() + PENALTY_MS);
    else if (this.penalised.size > 0) this.penalised.delete(node.id);
  }
}
