/**
 * Node selection: strategies (random, roundrobin) over a service's nodes, filters (version,
 * metadata) and a short memory of nodes that just failed, so retries move elsewhere.
 */
import type { Node, Registry, Service } from "../registry/registry.ts";

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

export class Selector {
  private readonly counters = new Map<string, number>();
  private readonly penalised = new Map<string, number>();

  constructor(
    readonly registry: Registry,
    private readonly strategy: Strategy = "random",
  ) {}

  /** Throws the registry's error (ServiceNotFoundError when there is no such service). */
  async select(service: string, opts: SelectOptions = {}): Promise<Next> {
    let services = await this.registry.getService(service);
    for (const f of opts.filters ?? []) services = f(services);
    const nodes = services.flatMap((s) => s.nodes);
    const strategy = opts.strategy ?? this.strategy;
    return (exclude) => {
      const now = Date.now();
      const allowed = nodes.filter((n) => !exclude?.has(n.id));
      const healthy = allowed.filter((n) => (this.penalised.get(n.id) ?? 0) <= now);
      // If every node failed recently, trying one again beats giving up.
      const pool = healthy.length > 0 ? healthy : allowed;
      if (pool.length === 0) return undefined;
      if (strategy === "roundrobin") {
        const i = this.counters.get(service) ?? 0;
        this.counters.set(service, i + 1);
        return pool[i % pool.length];
      }
      return pool[Math.floor(Math.random() * pool.length)];
    };
  }

  /** Remembers a node whose connection failed, so the next picks avoid it for a while. */
  mark(node: Node, failed: boolean): void {
    if (failed) this.penalised.set(node.id, Date.now() + PENALTY_MS);
    else if (this.penalised.size > 0) this.penalised.delete(node.id);
  }
}
