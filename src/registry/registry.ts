/** Registry contract, with go-micro's types and JSON field names. */
import { defaultLogger, type Logger } from "../logger.ts";

export interface Value {
  name: string;
  type: string;
  values?: Value[] | null;
  /**
   * The protobuf field number, for fields of shapes derived from protobuf schemas: what lets a
   * dashboard name the fields of a protobuf event. A tsmicro addition that go-micro peers ignore.
   */
  number?: number;
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
  /** The URI the registry was chosen by, without its query (for plugins that read credentials or a path from it). */
  url?: string;
  /** Where the registry logs (a service passes its own); default: the default logger. */
  logger?: Logger;
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
  /**
   * Optional: when this registry last lost or regained its server (epoch ms), undefined if it never
   * lost it. A cache uses it to tell a registration that lapsed during an outage (the node is still
   * re-registering) from a node that went away.
   */
  lastOutage?(): number | undefined;
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

// ---- Helpers shared by the registries that store one entry per node (etcd, consul, zookeeper, nats, dns) ----

/** Milliseconds a registry round-trip may take when RegistryOptions.timeout is not set. */
export const DEFAULT_REGISTRY_TIMEOUT_MS = 5000;

/** The server could not be reached or did not answer in time (as opposed to "no such service"). */
export class RegistryUnavailableError extends Error {
  constructor(registry: string, cause?: unknown) {
    const why = cause instanceof Error ? cause.message : cause === undefined ? "" : String(cause);
    super(`registry: ${registry} unreachable${why ? `: ${why}` : ""}`, { cause });
    this.name = "RegistryUnavailableError";
  }
}

/** go-micro's key prefix for etcd and zookeeper. */
export const REGISTRY_PREFIX = "/micro/registry";

/** A path segment: go-micro replaces "/" in names so each name stays one segment. */
const pathSegment = (name: string) => name.replaceAll("/", "-");

export const servicePath = (serviceName: string, prefix = REGISTRY_PREFIX) => `${prefix}/${pathSegment(serviceName)}`;

/** `/micro/registry/<service>/<node-id>` — the layout go-micro's etcd registry uses. */
export const nodePath = (serviceName: string, nodeId: string, prefix = REGISTRY_PREFIX) => `${servicePath(serviceName, prefix)}/${pathSegment(nodeId)}`;

/** The service once per node, each copy holding just that node: the unit stored per key. */
export function splitByNode(service: Service): Service[] {
  return service.nodes.map((node) => ({ ...cloneService(service), nodes: [structuredClone(node)] }));
}

/** The value as a Service if it has a service's shape; undefined otherwise. */
export function asService(value: unknown): Service | undefined {
  const s = value as Service | null | undefined;
  if (!s || typeof s.name !== "string" || !Array.isArray(s.nodes)) return undefined;
  const service: Service = { ...s, version: s.version ?? "" };
  // go-micro writes null for empty maps and lists (`"metadata":null`): read those as empty.
  if (s.metadata === null) service.metadata = {};
  if (s.endpoints === null) service.endpoints = [];
  else if (s.endpoints) service.endpoints = s.endpoints.map((e) => (e.metadata === null ? { ...e, metadata: {} } : e));
  service.nodes = s.nodes.map((n) => (n.metadata === null ? { ...n, metadata: {} } : n));
  return service;
}

/** Parses a stored service; undefined for anything that is not one (foreign keys under the prefix). */
export function decodeService(text: string): Service | undefined {
  try {
    return asService(JSON.parse(text));
  } catch {
    return undefined; // not JSON: ignored like go-micro ignores it
  }
}

/** getService's result from per-node entries: one Service per version, or ServiceNotFoundError. */
export function servicesOrNotFound(name: string, entries: Iterable<Service>): Service[] {
  const found = mergeByVersion([...entries].filter((s) => s.name === name));
  if (found.length === 0) throw new ServiceNotFoundError(name);
  return found;
}

/** listServices' result from per-node entries: one Service per name and version, without nodes. */
export function serviceSummaries(entries: Iterable<Service>): Service[] {
  return mergeByVersion([...entries]).map((s) => ({ ...s, nodes: [] }));
}

/**
 * Turns two snapshots of per-node entries (keyed by node) into watch events: nodes only in next
 * are created, nodes only in prev deleted, nodes whose entry changed updated.
 */
export function diffSnapshots(
  prev: ReadonlyMap<string, Service>,
  next: ReadonlyMap<string, Service>,
  emit: (action: WatchAction, service: Service) => void,
): void {
  for (const [key, service] of next) {
    const before = prev.get(key);
    if (!before) emit("create", service);
    else if (JSON.stringify(before) !== JSON.stringify(service)) emit("update", service);
  }
  for (const [key, service] of prev) if (!next.has(key)) emit("delete", service);
}

export { splitHostPort, joinHostPort } from "../address.ts";

/** What every server-backed registry shares: its options, their merging, timeout and addresses. */
export abstract class RegistryBase {
  protected opts: RegistryOptions;
  private outageAt?: number;

  constructor(opts: RegistryOptions = {}) {
    this.opts = opts;
  }

  init(opts: RegistryOptions): void {
    this.opts = { ...this.opts, ...opts };
  }

  options(): RegistryOptions {
    return this.opts;
  }

  lastOutage(): number | undefined {
    return this.outageAt;
  }

  /** The server could not be reached, or came back after that: see Registry.lastOutage. */
  protected noteOutage(): void {
    this.outageAt = Date.now();
  }

  protected get log(): Logger {
    return this.opts.logger ?? defaultLogger();
  }

  /** Milliseconds one server round-trip may take. */
  protected get timeout(): number {
    return this.opts.timeout ?? DEFAULT_REGISTRY_TIMEOUT_MS;
  }

  /** The server addresses given in the options, else the plugin's default. */
  protected serverAddresses(fallback: string): string[] {
    return this.opts.addresses?.length ? this.opts.addresses : [fallback];
  }
}
