/**
 * In-process registry. All instances in one process share one store (like go-micro's default
 * memory registry shared by services of one binary), so in-process services find each other.
 */
import {
  RegistryBase,
  ServiceNotFoundError,
  WatcherSet,
  cloneService,
  mergeByVersion,
  type Registry,
  type RegisterOptions,
  type RegistryOptions,
  type Service,
  type WatchOptions,
  type Watcher,
} from "./registry.ts";

interface Entry {
  /** The service holding just this node. */
  service: Service;
  expiresAt: number;
}

class MemoryStore {
  readonly entries = new Map<string, Entry>(); // key: service name + "\0" + node id
  readonly watchers = new WatcherSet();
  private sweeper?: NodeJS.Timeout;

  put(service: Service, ttlSeconds: number): void {
    const now = Date.now();
    for (const node of service.nodes) {
      const key = `${service.name}\0${node.id}`;
      const single: Service = { ...cloneService(service), nodes: [structuredClone(node)] };
      const previous = this.entries.get(key);
      this.entries.set(key, { service: single, expiresAt: ttlSeconds > 0 ? now + ttlSeconds * 1000 : Infinity });
      if (!previous) this.watchers.emit("create", single);
      else if (JSON.stringify(previous.service) !== JSON.stringify(single)) this.watchers.emit("update", single);
    }
    if (ttlSeconds > 0) this.ensureSweeper();
  }

  remove(service: Service): void {
    for (const node of service.nodes) {
      const key = `${service.name}\0${node.id}`;
      const entry = this.entries.get(key);
      if (entry && this.entries.delete(key)) this.watchers.emit("delete", entry.service);
    }
  }

  live(): Service[] {
    this.expire();
    return [...this.entries.values()].map((e) => e.service);
  }

  private expire(): void {
    const now = Date.now();
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt <= now) {
        this.entries.delete(key);
        this.watchers.emit("delete", entry.service);
      }
    }
  }

  private ensureSweeper(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => {
      this.expire();
      if (![...this.entries.values()].some((e) => e.expiresAt !== Infinity)) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
      }
    }, 250);
    this.sweeper.unref();
  }
}

const sharedStore = new MemoryStore();

export interface MemoryRegistryOptions extends RegistryOptions {
  /** A store of this instance's own instead of the process's shared one (useful in tests). */
  isolated?: boolean;
}

export default class MemoryRegistry extends RegistryBase implements Registry {
  private readonly store: MemoryStore;

  constructor(opts: MemoryRegistryOptions = {}) {
    super(opts);
    this.store = opts.isolated ? new MemoryStore() : sharedStore;
  }

  async register(service: Service, opts: RegisterOptions = {}): Promise<void> {
    this.store.put(service, opts.ttl ?? 0);
  }

  async deregister(service: Service): Promise<void> {
    this.store.remove(service);
  }

  async getService(name: string): Promise<Service[]> {
    const found = mergeByVersion(this.store.live().filter((s) => s.name === name));
    if (found.length === 0) throw new ServiceNotFoundError(name);
    return found;
  }

  async listServices(): Promise<Service[]> {
    return mergeByVersion(this.store.live()).map((s) => ({ ...s, nodes: [] }));
  }

  watch(opts?: WatchOptions): Watcher {
    return this.store.watchers.add(opts);
  }

  async close(): Promise<void> {}

  override toString(): string {
    return "memory";
  }
}
