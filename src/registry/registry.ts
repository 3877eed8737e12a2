/** Registry contract, with go-micro's types and JSON field names. */

export interface Value {
  name: string;
  type: string;
  values?: Value[] | null;
}

export interface Endpoint {
  name: string;
  request?: Value | null;
  response?: Value | null;
  metadata?: Record<string, string>;
}

export interface Node {
  id: string;
  /** host:port */
  address: string;
  metadata?: Record<string, string>;
}

export interface Service {
  name: string;
  version: string;
  metadata?: Record<string, string>;
  endpoints?: Endpoint[];
  nodes: Node[];
}

export interface RegisterOptions {
  /** Seconds the entry stays valid without a re-register. 0 or absent: the registry's default. */
  ttl?: number;
}

export interface WatchOptions {
  service?: string;
}

export type WatchAction = "create" | "update" | "delete";

export interface WatchEvent {
  action: WatchAction;
  service: Service;
}

export interface Watcher extends AsyncIterable<WatchEvent> {
  next(): Promise<WatchEvent>;
  stop(): void;
}

export interface RegistryOptions {
  /** host:port (or a comma-separated list) of the registry server. */
  addresses?: string[];
  /** Milliseconds a lookup or a server round-trip may take. */
  timeout?: number;
  /** Anything plugin-specific (e.g. mdns interface). */
  [key: string]: unknown;
}

export interface Registry {
  init(opts: RegistryOptions): Promise<void> | void;
  options(): RegistryOptions;
  register(service: Service, opts?: RegisterOptions): Promise<void>;
  deregister(service: Service): Promise<void>;
  /** One entry per version; throws ServiceNotFoundError when there is none. */
  getService(name: string): Promise<Service[]>;
  listServices(): Promise<Service[]>;
  watch(opts?: WatchOptions): Watcher;
  /** Releases sockets, sessions and timers. */
  close(): Promise<void>;
  toString(): string;
}

export class ServiceNotFoundError extends Error {
  constructor(readonly serviceName?: string) {
    super("registry: service not found");
    this.name = "ServiceNotFoundError";
  }
}

export const isNotFound = (err: unknown): err is ServiceNotFoundError => err instanceof ServiceNotFoundError;

/** Deep copy, so callers can never mutate a registry's stored entries. */
export function cloneService(s: Service): Service {
  return structuredClone(s);
}

/**
 * Merges per-node service entries into one Service per name and version, as getService returns them.
 * Registries that store one node per key (etcd, consul, zookeeper, mdns) all need this.
 */
export function mergeByVersion(entries: Service[]): Service[] {
  const byVersion = new Map<string, Service>();
  for (const e of entries) {
    const key = `${e.name}\0${e.version}`;
    const existing = byVersion.get(key);
    if (!existing) {
      byVersion.set(key, cloneService(e));
      continue;
    }
    for (const n of e.nodes) {
      const i = existing.nodes.findIndex((x) => x.id === n.id);
      if (i >= 0) existing.nodes[i] = structuredClone(n);
      else existing.nodes.push(structuredClone(n));
    }
  }
  return [...byVersion.values()];
}

/**
 * A push-fed async queue: a registry pushes events in, a consumer awaits next() or iterates.
 * stop() ends iteration and lets the registry drop the watcher.
 */
export class QueueWatcher implements Watcher {
  private readonly buffered: WatchEvent[] = [];
  private readonly waiting: Array<{ resolve: (e: WatchEvent) => void; reject: (e: Error) => void }> = [];
  private stopped = false;

  constructor(
    private readonly filter: WatchOptions = {},
    private readonly onStop?: () => void,
  ) {}

  get isStopped(): boolean {
    return this.stopped;
  }

  push(event: WatchEvent): void {
    if (this.stopped) return;
    if (this.filter.service && event.service.name !== this.filter.service) return;
    const waiter = this.waiting.shift();
    if (waiter) waiter.resolve(event);
    else this.buffered.push(event);
  }

  next(): Promise<WatchEvent> {
    if (this.stopped) return Promise.reject(new Error("watcher stopped"));
    const e = this.buffered.shift();
    if (e) return Promise.resolve(e);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const w of this.waiting.splice(0)) w.reject(new Error("watcher stopped"));
    this.onStop?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    while (!this.stopped) {
      try {
        yield await this.next();
      } catch {
        return;
      }
    }
  }
}

/** Fan-out of watch events to every live watcher of one registry. */
export class WatcherSet {
  private readonly watchers = new Set<QueueWatcher>();

  add(opts?: WatchOptions): QueueWatcher {
    const w: QueueWatcher = new QueueWatcher(opts, () => this.watchers.delete(w));
    this.watchers.add(w);
    return w;
  }

  emit(action: WatchAction, service: Service): void {
    for (const w of this.watchers) w.push({ action, service: cloneService(service) });
  }

  stopAll(): void {
    for (const w of [...this.watchers]) w.stop();
  }

  get size(): number {
    return this.watchers.size;
  }
}
