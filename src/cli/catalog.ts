/** A live view of a registry for the dashboard: every service with its nodes, kept current by watch(). */
import { logger } from "../logger.ts";
import type { Registry, Service, Value, Watcher } from "../registry/registry.ts";
import { lookup, serviceNames } from "./inspect.ts";

/** versions is [] once the service is gone. */
export type CatalogListener = (name: string, versions: Service[]) => void;

export class Catalog {
  private readonly services = new Map<string, Service[]>();
  private readonly listeners = new Set<CatalogListener>();
  /** Lookups run one after another, so an older answer never overwrites a newer one. */
  private queue: Promise<void> = Promise.resolve();
  /** Message type name → its fields with numbers, from every advertised shape; rebuilt after a change. */
  private shapes?: Map<string, Value[]>;

  private constructor(
    private readonly registry: Registry,
    private readonly watcher: Watcher,
  ) {}

  /** Resolves once every service the registry lists has been looked up. */
  static async open(registry: Registry): Promise<Catalog> {
    // Watching starts before the first listing, so no change can fall in between.
    const catalog = new Catalog(registry, registry.watch());
    void catalog.follow();
    await Promise.all((await serviceNames(registry)).map((name) => catalog.refresh(name)));
    return catalog;
  }

  /** Every service, sorted by name; each version with its nodes. */
  snapshot(): Service[] {
    return [...this.services.keys()].sort().flatMap((name) => this.services.get(name)!);
  }

  versions(name: string): Service[] {
    return this.services.get(name) ?? [];
  }

  /** The fields (with protobuf numbers) of a message type some service advertises, e.g. "student.Student". */
  readonly shapeOf = (typeName: string): Value[] | undefined => {
    if (!this.shapes) {
      this.shapes = new Map();
      const add = (value: Value | null | undefined) => {
        if (!value?.values?.length) return;
        const type = value.type.replace(/^\[\]|^map<[^,]+,|>$/g, "");
        if (value.values.every((f) => f.number !== undefined)) this.shapes!.set(type, value.values);
        value.values.forEach(add);
      };
      for (const s of this.snapshot()) for (const e of s.endpoints ?? []) [e.request, e.response].forEach(add);
    }
    return this.shapes.get(typeName);
  };

  /** Calls listener on every change; returns the function that stops it. */
  onChange(listener: CatalogListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.watcher.stop();
    this.listeners.clear();
  }

  private async follow(): Promise<void> {
    // A watch event may carry one node only (per-node registries): the lookup gives the whole service.
    for await (const event of this.watcher) void this.refresh(event.service.name);
  }

  private refresh(name: string): Promise<void> {
    this.queue = this.queue.then(() =>
      this.load(name).catch((err: Error) => logger.warn({ service: name, err: err.message }, "dashboard: lookup failed; keeping the last known state")),
    );
    return this.queue;
  }

  private async load(name: string): Promise<void> {
    const versions = await lookup(this.registry, name);
    if (JSON.stringify(versions) === JSON.stringify(this.versions(name))) return;
    if (versions.length === 0) this.services.delete(name);
    else this.services.set(name, versions);
    this.shapes = undefined;
    for (const listener of this.listeners) listener(name, versions);
  }
}
