/**
 * NATS registry, speaking go-micro's protocol: nothing is stored on the server. Every registry
 * answers queries for the services it registered, so a lookup is a request that collects the
 * answers arriving within queryTimeout; a process that dies stops answering at once.
 * Registrations are announced as go-micro's Result JSON, plus the ttl, which lets watchers forget
 * a node that stopped re-announcing itself. go-micro v5+ uses the subjects micro.nats.query and
 * micro.nats.watch, the v4 plugin micro.registry.nats.query and .watch: tsmicro answers, asks,
 * announces and listens on both, so it shares a NATS server with Go nodes of either.
 */
import type { NatsConnection, Msg } from "@nats-io/transport-node";
import { importOptional } from "../cmd/optional-package.ts";
import {
  RegistryBase,
  RegistryUnavailableError,
  WatcherSet,
  asService,
  decodeService,
  mergeByVersion,
  serviceSummaries,
  servicesOrNotFound,
  splitByNode,
  type Registry,
  type RegistryOptions,
  type RegisterOptions,
  type Service,
  type WatchAction,
  type WatchOptions,
  type Watcher,
} from "./registry.ts";

type NatsModule = typeof import("@nats-io/transport-node");

/** Query and watch subjects: go-micro v5+ first, then the v4 plugin's. */
const QUERY_SUBJECTS = ["micro.nats.query", "micro.registry.nats.query"];
const WATCH_SUBJECTS = ["micro.nats.watch", "micro.registry.nats.watch"];
const DEFAULT_ADDRESS = "127.0.0.1:4222";
/** How long a lookup collects answers (go-micro's default). */
const DEFAULT_QUERY_TIMEOUT_MS = 100;

/** go-micro's registry.Result on the wire; ttl (seconds) is ours and ignored by go-micro. */
interface Result {
  action: WatchAction | "get" | "list";
  service: Service;
  timestamp: number;
  ttl?: number;
}

/** A Result as Go writes it: registry.Result has no JSON tags, so its keys are capitalised. */
function readResult(value: unknown): { action?: string; service?: unknown; ttl?: number } {
  const r = (value ?? {}) as Record<string, unknown>;
  return { action: (r.action ?? r.Action) as string | undefined, service: r.service ?? r.Service, ttl: r.ttl as number | undefined };
}

const nodeKey = (s: Service) => `${s.name}\0${s.nodes[0]!.id}`;

export interface NatsRegistryOptions extends RegistryOptions {
  /** Milliseconds a lookup waits for the nodes' answers. */
  queryTimeout?: number;
}

export default class NatsRegistry extends RegistryBase implements Registry {
  protected declare opts: NatsRegistryOptions;
  private connecting?: Promise<NatsConnection>;
  private connected = false;
  /** Counts lost connections, so a query that spanned one is not mistaken for an empty answer. */
  private disconnects = 0;
  /** Our own nodes, each as the service holding just it: what we answer queries with until it expires. */
  private readonly local = new Map<string, { service: Service; expiresAt: number }>();
  private readonly watchers = new WatcherSet();
  private announcements?: Announcements;

  /** Connects once; a failed first connect is retried by the next call. */
  private connect(): Promise<NatsConnection> {
    this.connecting ??= this.open().catch((err: unknown) => {
      this.connecting = undefined;
      throw new RegistryUnavailableError("nats", err);
    });
    return this.connecting;
  }

  /** The connection, or RegistryUnavailableError while the server is away (lookups would just find nothing). */
  private async connection(): Promise<NatsConnection> {
    const nc = await this.connect();
    if (!this.connected) throw new RegistryUnavailableError("nats", "disconnected, reconnecting");
    return nc;
  }

  private async open(): Promise<NatsConnection> {
    const nats = await importOptional<NatsModule>("@nats-io/transport-node", "nats registry");
    const nc = await nats.connect({
      servers: this.serverAddresses(DEFAULT_ADDRESS),
      name: "tsmicro-registry",
      timeout: this.timeout,
      // Never give up: subscriptions (our answers to queries) come back with the connection.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
    this.connected = true;
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "disconnect") {
          this.connected = false;
          this.disconnects++;
          this.noteOutage();
          this.announcements?.pause();
        } else if (status.type === "reconnect") {
          this.connected = true;
          this.noteOutage();
          this.announcements?.resume();
        }
      }
    })();
    for (const subject of QUERY_SUBJECTS) {
      nc.subscribe(subject, {
        callback: (err, msg) => {
          if (!err) this.answer(msg);
        },
      });
    }
    return nc;
  }

  /** Answers a query with our nodes: one message per service version, as go-micro does. */
  private answer(msg: Msg): void {
    if (!msg.reply) return;
    let query: ReturnType<typeof readResult>;
    try {
      query = readResult(msg.json());
    } catch {
      return;
    }
    const now = Date.now();
    for (const [key, entry] of this.local) if (entry.expiresAt <= now) this.local.delete(key);
    const ours = [...this.local.values()].map((e) => e.service);
    const wanted = (query.service as { name?: string; Name?: string } | undefined)?.name;
    const matching = query.action === "get" ? ours.filter((s) => s.name === wanted) : query.action === "list" ? ours : [];
    for (const service of mergeByVersion(matching)) msg.respond(JSON.stringify(service));
  }

  private async announce(action: WatchAction, service: Service, ttl?: number): Promise<void> {
    const nc = await this.connection();
    const result: Result = { action, service, timestamp: Math.floor(Date.now() / 1000), ttl };
    const json = JSON.stringify(result);
    for (const subject of WATCH_SUBJECTS) nc.publish(subject, json);
  }

  async register(service: Service, opts: RegisterOptions = {}): Promise<void> {
    for (const single of splitByNode(service)) {
      const key = nodeKey(single);
      const action = this.local.has(key) ? "update" : "create";
      // Like any registry entry, it stays valid ttl seconds unless registered again.
      this.local.set(key, { service: single, expiresAt: opts.ttl && opts.ttl > 0 ? Date.now() + opts.ttl * 1000 : Infinity });
      await this.announce(action, single, opts.ttl);
    }
  }

  async deregister(service: Service): Promise<void> {
    for (const single of splitByNode(service)) {
      this.local.delete(nodeKey(single));
      await this.announce("delete", single);
    }
  }

  /** Sends a query and gathers every answer that arrives within queryTimeout. */
  private async query(action: "get" | "list", name = ""): Promise<Service[]> {
    const nc = await this.connection();
    const query: Result = { action, service: { name, version: "", nodes: [] }, timestamp: Math.floor(Date.now() / 1000) };
    const maxWait = Number(this.opts.queryTimeout ?? DEFAULT_QUERY_TIMEOUT_MS);
    const ask = async (subject: string): Promise<Service[]> => {
      const found: Service[] = [];
      try {
        for await (const answer of await nc.requestMany(subject, JSON.stringify(query), { strategy: "timer", maxWait })) {
          const service = decodeService(answer.string());
          if (service) found.push(service);
        }
      } catch (err) {
        // Nobody subscribed to queries means nobody has anything registered.
        if ((err as Error).name !== "NoRespondersError") throw new RegistryUnavailableError("nats", err);
      }
      return found;
    };
    const disconnects = this.disconnects;
    // tsmicro nodes answer on both subjects: the same node twice is merged by its id.
    const found = (await Promise.all(QUERY_SUBJECTS.map(ask))).flat();
    // Answers lost with the connection are no answers: "nobody has it" would be a lie.
    if (!this.connected || this.disconnects !== disconnects) throw new RegistryUnavailableError("nats", "disconnected during the query");
    return found;
  }

  async getService(name: string): Promise<Service[]> {
    return servicesOrNotFound(name, await this.query("get", name));
  }

  async listServices(): Promise<Service[]> {
    return serviceSummaries(await this.query("list"));
  }

  watch(opts?: WatchOptions): Watcher {
    const watcher = this.watchers.add(opts);
    if (!this.announcements) {
      this.announcements = new Announcements(this.watchers);
      const announcements = this.announcements;
      this.connect().then(
        (nc) => announcements.listen(nc),
        (err: unknown) => {
          this.log.warn({ err }, "nats registry: could not start the watch");
          this.watchers.stopAll();
          this.announcements = undefined;
        },
      );
    }
    return watcher;
  }

  async close(): Promise<void> {
    this.watchers.stopAll();
    this.announcements?.stop();
    this.announcements = undefined;
    this.local.clear();
    const nc = await this.connecting?.catch(() => undefined);
    this.connecting = undefined;
    await nc?.close();
  }

  override toString(): string {
    return "nats";
  }
}

/**
 * Turns announcements into watch events: the first one of a node is a create, one that changes it
 * an update, a re-announce that changes nothing no event. A node announced with a ttl that is not
 * announced again within it is reported deleted (its process died without deregistering).
 * While our connection is down nobody's re-announce can reach us, so expiry pauses, and on
 * reconnect every node gets its full ttl again to re-announce (nodes outlive a server outage).
 */
class Announcements {
  private readonly seen = new Map<string, { json: string; single: Service; ttl?: number; expiry?: NodeJS.Timeout }>();
  /** Nodes deleted a moment ago: tsmicro announces on both watch subjects, a delete arrives twice. */
  private readonly justDeleted = new Map<string, number>();
  private stopped = false;
  private paused = false;

  constructor(private readonly watchers: WatcherSet) {}

  listen(nc: NatsConnection): void {
    if (this.stopped) return;
    for (const subject of WATCH_SUBJECTS) {
      nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err || this.stopped) return;
          try {
            this.handle(readResult(msg.json()));
          } catch {
            /* not a Result: ignored */
          }
        },
      });
    }
  }

  private handle(result: ReturnType<typeof readResult>): void {
    const service = asService(result.service);
    if (!service || service.nodes.length === 0) return;
    const now = Date.now();
    for (const [key, at] of this.justDeleted) if (now - at > 2000) this.justDeleted.delete(key);
    for (const single of splitByNode(service)) {
      const key = nodeKey(single);
      const known = this.seen.get(key);
      clearTimeout(known?.expiry);
      if (result.action === "delete") {
        this.seen.delete(key);
        if (!known && this.justDeleted.has(key)) continue;
        this.justDeleted.set(key, now);
        this.watchers.emit("delete", single);
        continue;
      }
      this.justDeleted.delete(key);
      const json = JSON.stringify(single);
      if (!known) this.watchers.emit("create", single);
      else if (known.json !== json) this.watchers.emit("update", single);
      this.seen.set(key, { json, single, ttl: result.ttl, expiry: this.expireAfter(key, single, result.ttl) });
    }
  }

  private expireAfter(key: string, single: Service, ttl: number | undefined): NodeJS.Timeout | undefined {
    if (!ttl || ttl <= 0 || this.paused) return undefined;
    const expiry = setTimeout(() => {
      this.seen.delete(key);
      this.watchers.emit("delete", single);
    }, ttl * 1000);
    expiry.unref();
    return expiry;
  }

  /** The connection dropped: no node can be heard re-announcing, so none expires meanwhile. */
  pause(): void {
    this.paused = true;
    for (const entry of this.seen.values()) clearTimeout(entry.expiry);
  }

  /** Reconnected: each node has its ttl from now to be heard again. */
  resume(): void {
    this.paused = false;
    for (const [key, entry] of this.seen) entry.expiry = this.expireAfter(key, entry.single, entry.ttl);
  }

  stop(): void {
    this.stopped = true;
    for (const { expiry } of this.seen.values()) clearTimeout(expiry);
    this.seen.clear();
  }
}
