/**
 * A watch-driven cache in front of any registry, for clients that look services up on every call.
 * A service is fetched once (concurrent misses share that one lookup), then kept current by the
 * registry's watch: created and updated nodes are merged in, deleted ones evicted. After `ttl`
 * seconds an entry is re-fetched in the background while callers keep getting it. When the
 * registry cannot be reached, the last known nodes keep being served, and one log line says so.
 *
 * An outage must not cost a client the nodes that stayed alive through it. So a removal that would
 * leave a service with no node at all (a watch delete, a re-fetch that finds nothing) is checked
 * with the registry first: while it cannot be reached, or for `resyncGrace` seconds after it could
 * not be (a failed lookup here, or the registry's own lastOutage(): a lost watch or session), "not
 * there" means "not re-registered yet" (a lease, session or check that lapsed while the server was
 * away; every live node registers again within its interval), and the last known nodes stay.
 */
import { logger } from "../logger.ts";
import { singleFlight } from "../single-flight.ts";
import {
  cloneService,
  isNotFound,
  type Node,
  type Registry,
  type RegisterOptions,
  type RegistryOptions,
  type Service,
  type WatchEvent,
  type WatchOptions,
  type Watcher,
} from "./registry.ts";

export interface CacheOptions {
  /** Seconds an entry is used before it is fetched again (watch events keep it current meanwhile). Default 60. */
  ttl?: number;
  /** Where the outage line goes (default: the framework logger, as a warning). */
  log?: (message: string) => void;
  /**
   * Seconds after the registry was last unreachable during which a service it no longer lists keeps
   * its last known nodes, while they re-register. Default 60, go-micro's default register TTL.
   */
  resyncGrace?: number;
}

const DEFAULT_TTL_SECONDS = 60;
const DEFAULT_RESYNC_GRACE_SECONDS = 60;
/** While the registry is unreachable, how often a stale entry tries the registry again. */
const OUTAGE_RETRY_MS = 1000;

interface Entry {
  services: Service[];
  expiresAt: number;
  /** Built on first read after a change, then shared by every read until the next change. */
  snapshot?: Snapshot;
}

/** A read-only view of a service's nodes, shared by callers that promise not to mutate it. */
export interface Snapshot {
  readonly services: readonly Service[];
  /** Every node of every version. */
  readonly nodes: readonly Node[];
}

function snapshotOf(entry: Entry): Snapshot {
  if (!entry.snapshot) {
    const services = copy(entry.services);
    entry.snapshot = { services, nodes: services.flatMap((s) => s.nodes) };
  }
  return entry.snapshot;
}

const copy = (services: Service[]) => services.map(cloneService);

export class CacheRegistry implements Registry {
  private readonly ttlMs: number;
  private readonly resyncGraceMs: number;
  private readonly log: (message: string) => void;
  private readonly entries = new Map<string, Entry>();
  private readonly lookups = new Map<string, Promise<Service[]>>();
  private watcher?: Watcher;
  /** The registry failed a lookup and stale entries are being served; cleared by the next success. */
  private unreachable = false;
  /** When a lookup last found the registry unreachable (epoch ms). */
  private unreachableAt?: number;
  private stopped = false;

  constructor(
    readonly registry: Registry,
    opts: CacheOptions = {},
  ) {
    this.ttlMs = (opts.ttl ?? DEFAULT_TTL_SECONDS) * 1000;
    this.resyncGraceMs = (opts.resyncGrace ?? DEFAULT_RESYNC_GRACE_SECONDS) * 1000;
    this.log = opts.log ?? ((message) => logger.warn(message));
  }

  async getService(name: string): Promise<Service[]> {
    return copy((await this.snapshot(name)).services as Service[]);
  }

  /**
   * The service's nodes without a copy per call: the selector's read on every RPC. Throws as
   * getService does.
   */
  async snapshot(name: string): Promise<Snapshot> {
    const cached = this.cached(name);
    if (cached) return cached;
    const services = await this.lookup(name);
    const fetched = this.entries.get(name);
    return fetched ? snapshotOf(fetched) : snapshotOf({ services, expiresAt: 0 });
  }

  /** snapshot() without waiting: the cached nodes, or undefined when the service must be fetched first. */
  cached(name: string): Snapshot | undefined {
    const entry = this.entries.get(name);
    if (!entry) return undefined;
    // Expired: refresh in the background; lookup handles its own failures.
    if (entry.expiresAt <= Date.now()) this.lookup(name).catch(() => undefined);
    return snapshotOf(entry);
  }

  /** One registry lookup per service at a time, however many callers wait for it. */
  private lookup(name: string): Promise<Service[]> {
    return singleFlight(this.lookups, name, () => this.fetch(name));
  }

  private async fetch(name: string): Promise<Service[]> {
    this.startWatch();
    try {
      const services = await this.registry.getService(name);
      if (!this.stopped) this.entries.set(name, { services, expiresAt: Date.now() + this.ttlMs });
      if (this.unreachable) {
        this.unreachable = false;
        this.log(`registry ${this.registry} reachable again; cache refreshed`);
      }
      return services;
    } catch (err) {
      const stale = this.entries.get(name);
      if (isNotFound(err)) {
        if (stale && this.resyncing()) {
          // Not re-registered yet after an outage: keep the nodes, ask again shortly.
          stale.expiresAt = Date.now() + OUTAGE_RETRY_MS;
          return stale.services;
        }
        this.entries.delete(name);
        throw err;
      }
      this.unreachableAt = Date.now();
      if (!stale) throw err;
      if (!this.unreachable) {
        this.unreachable = true;
        this.log(`registry ${this.registry} unreachable (${(err as Error).message}); serving last known nodes from the cache`);
      }
      stale.expiresAt = Date.now() + OUTAGE_RETRY_MS;
      return stale.services;
    }
  }

  /** The registry was unreachable within the resync grace: a missing node may still be re-registering. */
  private resyncing(): boolean {
    const outage = this.lastOutage();
    return outage !== undefined && Date.now() - outage < this.resyncGraceMs;
  }

  /** The later of this cache's last failed lookup and the registry's own last outage. */
  lastOutage(): number | undefined {
    const times = [this.unreachableAt, this.registry.lastOutage?.()].filter((t) => t !== undefined);
    return times.length ? Math.max(...times) : undefined;
  }

  private startWatch(): void {
    if (this.watcher || this.stopped) return;
    const watcher = this.registry.watch();
    this.watcher = watcher;
    void (async () => {
      try {
        for await (const event of watcher) this.apply(event);
      } finally {
        if (this.watcher === watcher) {
          this.watcher = undefined;
          // Without a watch nothing keeps entries current: let the next call fetch them again.
          for (const entry of this.entries.values()) entry.expiresAt = 0;
        }
      }
    })();
  }

  /** Applies a watch event to a cached service (services nobody looked up are not cached). */
  private apply({ action, service }: WatchEvent): void {
    const entry = this.entries.get(service.name);
    if (!entry) return;
    entry.snapshot = undefined;
    const ids = new Set(service.nodes.map((n) => n.id));
    if (action === "delete") {
      const i = entry.services.findIndex((s) => s.version === service.version);
      if (i < 0) return;
      const remaining = entry.services[i]!.nodes.filter((n) => !ids.has(n.id));
      if (remaining.length === 0 && entry.services.length === 1) {
        // The service's last node: the registry decides (a lookup replaces, keeps or drops the entry).
        entry.expiresAt = 0;
        this.lookup(service.name).catch(() => undefined);
        return;
      }
      if (remaining.length > 0) entry.services[i]!.nodes = remaining;
      else entry.services.splice(i, 1);
      return;
    }
    // A node that changed version leaves its old version's entry.
    for (const other of entry.services) if (other.version !== service.version) other.nodes = other.nodes.filter((n) => !ids.has(n.id));
    entry.services = entry.services.filter((s) => s.version === service.version || s.nodes.length > 0);
    // Create/update: the event's service (its metadata, endpoints) plus the other nodes we knew (as go-micro's cache does).
    const i = entry.services.findIndex((s) => s.version === service.version);
    const updated = cloneService(service);
    if (i < 0) entry.services.push(updated);
    else {
      updated.nodes.push(...entry.services[i]!.nodes.filter((n) => !ids.has(n.id)));
      entry.services[i] = updated;
    }
  }

  // ---- everything else goes straight to the registry ----

  init(opts: RegistryOptions): Promise<void> | void {
    return this.registry.init(opts);
  }

  options(): RegistryOptions {
    return this.registry.options();
  }

  register(service: Service, opts?: RegisterOptions): Promise<void> {
    return this.registry.register(service, opts);
  }

  deregister(service: Service): Promise<void> {
    return this.registry.deregister(service);
  }

  listServices(): Promise<Service[]> {
    return this.registry.listServices();
  }

  watch(opts?: WatchOptions): Watcher {
    return this.registry.watch(opts);
  }

  /** Stops the cache (its watch, its entries) and leaves the registry open for whoever else uses it. */
  stop(): void {
    this.stopped = true;
    this.watcher?.stop();
    this.watcher = undefined;
    this.entries.clear();
  }

  /** Stops the cache and closes the registry. */
  async close(): Promise<void> {
    this.stop();
    await this.registry.close();
  }

  toString(): string {
    return this.registry.toString();
  }
}
