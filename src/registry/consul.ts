/**
 * Consul registry, as go-micro's: each node is a Consul service instance (ID = node id) with a
 * TTL check "service:<node-id>" that every register call passes. Lookups and watches read passing
 * instances only, so a node whose process died drops out as soon as its TTL lapses; Consul removes
 * the critical instance itself later (DeregisterCriticalServiceAfter, a minute at least). Version,
 * endpoints and node metadata travel in tags with go-micro's encoding (v-/e-/t- + hex of zlib'd
 * JSON), service metadata in Meta, so go-micro services and ours see each other. Watches are
 * Consul blocking queries.
 */
import { deflateSync, inflateSync } from "node:zlib";
import type Consul from "consul";
import type { RegisterOptions as ConsulRegistration } from "consul/lib/agent/service.js";
import { importOptional } from "../cmd/optional-package.ts";
import { logger } from "../logger.ts";
import {
  RegistryBase,
  RegistryUnavailableError,
  WatcherSet,
  diffSnapshots,
  joinHostPort,
  serviceSummaries,
  servicesOrNotFound,
  splitByNode,
  splitHostPort,
  type Endpoint,
  type Registry,
  type RegisterOptions,
  type Service,
  type WatchOptions,
  type Watcher,
} from "./registry.ts";

type ConsulModule = { default: typeof Consul };
type ConsulClient = InstanceType<typeof Consul>;
type ConsulWatch = ReturnType<ConsulClient["watch"]>;

const DEFAULT_ADDRESS = "127.0.0.1:8500";
/** Consul will not deregister a critical service sooner than a minute; go-micro adds 5 s of splay. */
const MIN_DEREGISTER_AFTER_S = 60;
const DEREGISTER_SPLAY_S = 5;
/** Blocking queries wait this long for a change before returning unchanged. */
const WATCH_WAIT = "30s";
const WATCH_BACKOFF_MAX_MS = 5000;

/** One row of /v1/health/service/<name>. */
interface HealthEntry {
  Node: { Address: string };
  Service: { ID: string; Service: string; Tags: string[] | null; Address: string; Port: number; Meta: Record<string, string> | null };
}

// ---- go-micro's tag encoding ----

const encode = (text: string) => deflateSync(Buffer.from(text)).toString("hex");
const decode = (hex: string) => inflateSync(Buffer.from(hex, "hex")).toString();

function encodeTags(service: Service): string[] {
  const node = service.nodes[0]!;
  return [
    ...Object.entries(node.metadata ?? {}).map(([k, v]) => `t-${encode(JSON.stringify({ [k]: v }))}`),
    ...(service.endpoints ?? []).map((e) => `e-${encode(JSON.stringify(e))}`),
    `v-${encode(service.version)}`,
  ];
}

/** Reads tags in go-micro's current (x-<hex zlib>) and original (x=<json>) encodings; others are ignored. */
function decodeTags(tags: string[] | null): { version: string; endpoints: Endpoint[]; metadata: Record<string, string> } {
  const out = { version: "", endpoints: [] as Endpoint[], metadata: {} as Record<string, string> };
  for (const tag of tags ?? []) {
    const m = /^([tev])([-=])(.*)$/.exec(tag);
    if (!m) continue;
    const [, kind, sep, payload] = m as unknown as [string, "t" | "e" | "v", "-" | "=", string];
    try {
      const text = sep === "-" ? decode(payload) : payload;
      if (kind === "v") out.version = text;
      else if (kind === "e") out.endpoints.push(JSON.parse(text) as Endpoint);
      else Object.assign(out.metadata, JSON.parse(text) as Record<string, string>);
    } catch {
      /* a tag of someone else's that happens to look like ours */
    }
  }
  return out;
}

function entryToService(e: HealthEntry): Service {
  const { version, endpoints, metadata } = decodeTags(e.Service.Tags);
  return {
    name: e.Service.Service,
    version,
    metadata: e.Service.Meta ?? {},
    endpoints,
    nodes: [{ id: e.Service.ID, address: joinHostPort(e.Service.Address || e.Node.Address, e.Service.Port), metadata }],
  };
}

/** Consul answered with an HTTP error (as opposed to not answering at all). */
const answeredWithError = (err: unknown) => typeof (err as { response?: { statusCode?: number } }).response?.statusCode === "number";

export default class ConsulRegistry extends RegistryBase implements Registry {
  private client?: Promise<ConsulClient>;
  /** Tags+meta last registered per node id: an unchanged re-register only passes the TTL check. */
  private readonly registered = new Map<string, string>();
  private readonly watchers = new WatcherSet();
  private catalogWatch?: CatalogWatch;

  /** Address from the options, else CONSUL_HTTP_ADDR (Consul's own variable), else the local agent. */
  private connect(): Promise<ConsulClient> {
    this.client ??= importOptional<ConsulModule>("consul", "consul registry").then(({ default: ConsulClass }) => {
      const raw = this.opts.addresses?.[0] ?? process.env.CONSUL_HTTP_ADDR ?? DEFAULT_ADDRESS;
      const secure = raw.startsWith("https://");
      const { host, port } = splitHostPort(raw.replace(/^https?:\/\//, "").replace(/\/.*$/, ""));
      return new ConsulClass({ host, port: port ?? (secure ? 443 : 8500), secure });
    });
    return this.client;
  }

  /** Per-request timeout (the typings omit it; the client honours it). */
  private timed<T extends object>(options: T): T {
    return { ...options, timeout: this.timeout };
  }

  private async call<T>(what: string, fn: (consul: ConsulClient) => Promise<T>): Promise<T> {
    const consul = await this.connect();
    try {
      return await fn(consul);
    } catch (err) {
      if (answeredWithError(err)) throw err;
      this.noteOutage();
      throw new RegistryUnavailableError(`consul (${what})`, err);
    }
  }

  async register(service: Service, opts: RegisterOptions = {}): Promise<void> {
    const ttl = Math.max(0, Math.ceil(opts.ttl ?? 0));
    for (const single of splitByNode(service)) {
      const node = single.nodes[0]!;
      const { host, port } = splitHostPort(node.address);
      const registration = this.timed({
        id: node.id,
        name: single.name,
        tags: encodeTags(single),
        address: host,
        port: port ?? 0,
        meta: single.metadata ?? {},
        timeout: this.timeout,
        ...(ttl > 0 && {
          check: {
            ttl: `${ttl}s`,
            status: "passing",
            deregistercriticalserviceafter: `${Math.max(ttl, MIN_DEREGISTER_AFTER_S) + DEREGISTER_SPLAY_S}s`,
          },
        }),
      });
      // (The typings demand a check timeout, which only script/http checks have: hence the cast below.)
      const fingerprint = JSON.stringify(registration);
      const pass = () => this.call("pass", (c) => c.agent.check.pass(this.timed({ id: `service:${node.id}` })));
      if (this.registered.get(node.id) === fingerprint && ttl > 0) {
        const passed = await pass().then(
          () => true,
          (err: unknown) => {
            // The agent forgot the check (restarted, or reaped the service as critical): register again.
            if (answeredWithError(err)) return false;
            throw err;
          },
        );
        if (passed) continue;
      }
      await this.call("register", (c) => c.agent.service.register(registration as ConsulRegistration));
      this.registered.set(node.id, fingerprint);
      // A re-registered check keeps the status it had (critical once its TTL lapsed) and its TTL
      // starts over: pass it, so the node is listed from now on.
      if (ttl > 0) await pass();
    }
  }

  async deregister(service: Service): Promise<void> {
    for (const node of service.nodes) {
      this.registered.delete(node.id);
      await this.call("deregister", (c) => c.agent.service.deregister(this.timed({ id: node.id })));
    }
  }

  async getService(name: string): Promise<Service[]> {
    const entries = await this.call<HealthEntry[]>("health", (c) =>
      c.health.service(this.timed({ service: name, passing: true })),
    );
    return servicesOrNotFound(name, entries.map(entryToService));
  }

  async listServices(): Promise<Service[]> {
    const byName = await this.call<Record<string, string[]>>("catalog", (c) => c.catalog.service.list(this.timed({})));
    return serviceSummaries(
      Object.entries(byName)
        .filter(([name]) => name !== "consul")
        .map(([name, tags]) => ({ name, version: decodeTags(tags).version, nodes: [] })),
    );
  }

  watch(opts?: WatchOptions): Watcher {
    const watcher = this.watchers.add(opts);
    if (!this.catalogWatch) {
      this.catalogWatch = new CatalogWatch(this.watchers, () => this.noteOutage());
      const catalogWatch = this.catalogWatch;
      this.connect().then(
        (consul) => catalogWatch.start(consul),
        (err: unknown) => {
          this.log.warn({ err }, "consul registry: could not start the watch");
          this.watchers.stopAll();
          this.catalogWatch = undefined;
        },
      );
    }
    return watcher;
  }

  async close(): Promise<void> {
    this.watchers.stopAll();
    this.catalogWatch?.stop();
    this.catalogWatch = undefined;
    (await this.client)?.destroy();
    this.client = undefined;
  }

  override toString(): string {
    return "consul";
  }
}

/**
 * A blocking query on the catalog's service names, and under it one on each service's passing
 * instances; each answer replaces that service's snapshot, and the difference becomes events.
 */
class CatalogWatch {
  private consul?: ConsulClient;
  private namesWatch?: ConsulWatch;
  private readonly perService = new Map<string, { watch: ConsulWatch; snapshot: Map<string, Service> }>();
  private stopped = false;

  /** A blocking query failed, or answered again after failing. */
  private failing = false;

  constructor(
    private readonly watchers: WatcherSet,
    private readonly onOutage: () => void,
  ) {}

  start(consul: ConsulClient): void {
    if (this.stopped) return;
    this.consul = consul;
    this.namesWatch = this.blockingQuery(consul.catalog.service.list, {}, (names: Record<string, string[]>) => this.onNames(names));
  }

  private blockingQuery<T>(method: (...args: never[]) => unknown, options: Record<string, unknown>, onChange: (data: T) => void): ConsulWatch {
    const w = this.consul!.watch({
      method,
      options: { ...options, wait: WATCH_WAIT } as Record<string, string>,
      backoffMax: WATCH_BACKOFF_MAX_MS,
    });
    w.on("change", (data: T) => {
      if (this.failing) this.onOutage();
      this.failing = false;
      onChange(data);
    });
    // The watch retries by itself with backoff; a failure is only worth a debug line.
    w.on("error", (err: Error) => {
      this.failing = true;
      this.onOutage();
      logger.debug({ err }, "consul registry: blocking query failed, retrying");
    });
    return w;
  }

  private onNames(names: Record<string, string[]>): void {
    for (const name of Object.keys(names)) {
      if (name === "consul" || this.perService.has(name)) continue;
      const state = { snapshot: new Map<string, Service>(), watch: undefined as unknown as ConsulWatch };
      state.watch = this.blockingQuery(this.consul!.health.service, { service: name, passing: true }, (entries: HealthEntry[]) =>
        this.replace(state, entries.map(entryToService)),
      );
      this.perService.set(name, state);
    }
    for (const [name, state] of this.perService) {
      if (name in names) continue;
      state.watch.end();
      this.perService.delete(name);
      this.replace(state, []);
    }
  }

  private replace(state: { snapshot: Map<string, Service> }, services: Service[]): void {
    if (this.stopped) return;
    const next = new Map(services.map((s) => [s.nodes[0]!.id, s]));
    diffSnapshots(state.snapshot, next, (action, service) => this.watchers.emit(action, service));
    state.snapshot = next;
  }

  stop(): void {
    this.stopped = true;
    this.namesWatch?.end();
    for (const { watch } of this.perService.values()) watch.end();
    this.perService.clear();
  }
}
