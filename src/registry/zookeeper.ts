/**
 * ZooKeeper registry: each node is an ephemeral znode /micro-registry/<service>/<node-id> (the
 * layout of go-micro's zookeeper plugin) holding the JSON of the service with that one node. Ephemeral nodes live as long as the session that
 * created them, so registrations use a session whose timeout is the register TTL: a process that
 * dies without deregistering vanishes once that timeout passes. Each register call makes sure the
 * znode exists (re-creating it after the session expired, e.g. during a long outage).
 */
import type { Socket } from "node:net";
import { importOptional } from "../cmd/optional-package.ts";
import { logger } from "../logger.ts";
import {
  RegistryBase,
  RegistryUnavailableError,
  WatcherSet,
  decodeService,
  diffSnapshots,
  nodePath,
  servicePath,
  serviceSummaries,
  servicesOrNotFound,
  splitByNode,
  type Registry,
  type RegisterOptions,
  type Service,
  type WatchOptions,
  type Watcher,
} from "./registry.ts";

/** go-micro's zookeeper plugin keeps its nodes under this path (its etcd registry under /micro/registry). */
const ZK_PREFIX = "/micro-registry";

/** The slice of node-zookeeper-client (which ships no types) this registry uses. */
interface ZkState {
  name: string;
}
interface ZkError extends Error {
  getCode(): number;
}
type Callback<T> = (error: ZkError | null, result: T) => void;
type ZkWatcher = () => void;
interface ZkClient {
  connect(): void;
  close(): void;
  getState(): ZkState;
  once(event: "connected", listener: () => void): void;
  removeListener(event: "connected", listener: () => void): void;
  on(event: "state", listener: (state: ZkState) => void): void;
  getChildren(path: string, watcher: ZkWatcher | undefined, cb: Callback<string[]>): void;
  getData(path: string, watcher: ZkWatcher | undefined, cb: Callback<Buffer>): void;
  exists(path: string, watcher: ZkWatcher | undefined, cb: Callback<unknown>): void;
  create(path: string, data: Buffer, mode: number, cb: Callback<string>): void;
  mkdirp(path: string, cb: Callback<string>): void;
  setData(path: string, data: Buffer, version: number, cb: Callback<unknown>): void;
  remove(path: string, version: number, cb: Callback<void>): void;
}
interface ZkModule {
  createClient(connectionString: string, opts: { sessionTimeout: number; spinDelay: number; retries: number }): ZkClient;
  CreateMode: { EPHEMERAL: number };
  Exception: { NO_NODE: number; NODE_EXISTS: number };
}

const DEFAULT_ADDRESS = "127.0.0.1:2181";
/** Session timeout of the session used for lookups and watches (and registrations with ttl 0). */
const DEFAULT_SESSION_MS = 30_000;
/** Pause between connection attempts while the server is away. */
const RECONNECT_DELAY_MS = 500;
const RESYNC_RETRY_MS = 1000;
/** How long a connection may wait for ZooKeeper's answer to the session handshake before it is dropped and retried. */
const HANDSHAKE_TIMEOUT_MS = 2000;

/** One ZooKeeper session, connected lazily and replaced by a fresh one once the server expires it. */
class Session {
  private client?: ZkClient;
  private watchdog?: NodeJS.Timeout;
  /** Set once the session connected: from then on, a dropped connection fails calls at once. */
  private established = false;
  private closed = false;

  constructor(
    private readonly zk: ZkModule,
    private readonly connectionString: string,
    private readonly sessionTimeoutMs: number,
    private readonly callTimeoutMs: number,
    private readonly onExpired: () => void,
    /** The connection was lost or came back: see Registry.lastOutage. */
    private readonly onOutage: () => void,
  ) {}

  /** Runs one client call; connection trouble becomes RegistryUnavailableError, ZooKeeper answers pass through. */
  async call<T>(what: string, fn: (client: ZkClient, cb: Callback<T>) => void): Promise<T> {
    try {
      return await this.attempt(what, fn);
    } catch (err) {
      if (err instanceof RegistryUnavailableError) this.onOutage();
      throw err;
    }
  }

  private async attempt<T>(what: string, fn: (client: ZkClient, cb: Callback<T>) => void): Promise<T> {
    const client = await this.ready(what);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new RegistryUnavailableError("zookeeper", `${what} took longer than ${this.callTimeoutMs} ms`)),
        this.callTimeoutMs,
      );
      fn(client, (error, result) => {
        clearTimeout(timer);
        if (!error) resolve(result);
        else if (error.getCode() === this.zk.Exception.NO_NODE || error.getCode() === this.zk.Exception.NODE_EXISTS) reject(error);
        else reject(new RegistryUnavailableError("zookeeper", error));
      });
    });
  }

  private ready(what: string): Promise<ZkClient> {
    if (this.closed) return Promise.reject(new Error("zookeeper registry: closed"));
    const client = this.client ?? this.open();
    const state = client.getState().name;
    if (state === "SYNC_CONNECTED" || state === "CONNECTED_READ_ONLY") return Promise.resolve(client);
    if (this.established) return Promise.reject(new RegistryUnavailableError("zookeeper", `disconnected (${what})`));
    return new Promise((resolve, reject) => {
      const onConnected = () => {
        clearTimeout(timer);
        resolve(client);
      };
      // Connecting goes on in the background; a later call may find it done.
      const timer = setTimeout(() => {
        client.removeListener("connected", onConnected);
        reject(new RegistryUnavailableError("zookeeper", `no connection to ${this.connectionString} within ${this.callTimeoutMs} ms`));
      }, this.callTimeoutMs);
      client.once("connected", onConnected);
    });
  }

  private open(): ZkClient {
    const client = this.zk.createClient(this.connectionString, {
      sessionTimeout: this.sessionTimeoutMs,
      spinDelay: RECONNECT_DELAY_MS,
      retries: 0,
    });
    this.client = client;
    this.established = false;
    client.on("state", (state) => {
      if (this.client !== client) return;
      if (state.name === "DISCONNECTED" || (state.name === "SYNC_CONNECTED" && this.established)) this.onOutage();
      if (state.name === "SYNC_CONNECTED") this.established = true;
      if (state.name === "EXPIRED") {
        logger.warn("zookeeper registry: session expired, opening a new one");
        this.disconnect();
        this.onExpired();
      }
    });
    client.connect();
    this.watchdog = this.watchHandshake(client);
    return client;
  }

  /**
   * node-zookeeper-client waits forever for the answer to its session handshake, and a server that
   * is still starting may accept the connection and never answer (seen after restarts). A socket
   * stuck like that for HANDSHAKE_TIMEOUT_MS is destroyed, and the client reconnects, same session.
   */
  private watchHandshake(client: ZkClient): NodeJS.Timeout {
    let pending: { socket: Socket; since: number } | undefined;
    const timer = setInterval(() => {
      const socket = (client as unknown as { connectionManager?: { socket?: Socket } }).connectionManager?.socket;
      const state = client.getState().name;
      const handshaking = socket && !socket.connecting && !socket.destroyed && state !== "SYNC_CONNECTED" && state !== "CONNECTED_READ_ONLY";
      if (!handshaking) pending = undefined;
      else if (pending?.socket !== socket) pending = { socket, since: Date.now() };
      else if (Date.now() - pending.since > HANDSHAKE_TIMEOUT_MS) {
        logger.debug("zookeeper registry: no answer to the session handshake, reconnecting");
        socket.destroy();
        pending = undefined;
      }
    }, HANDSHAKE_TIMEOUT_MS / 4);
    timer.unref();
    return timer;
  }

  /** Ends the current client; the next call opens a new session. */
  private disconnect(): void {
    clearInterval(this.watchdog);
    this.client?.close();
    this.client = undefined;
    this.established = false;
  }

  close(): void {
    this.closed = true;
    this.disconnect();
  }
}

export default class ZookeeperRegistry extends RegistryBase implements Registry {
  private zk?: Promise<ZkModule>;
  /** Sessions by timeout: one for lookups and watches, one per register TTL in use. */
  private readonly sessions = new Map<number, Session>();
  /** Data last written per znode path, so a re-register only writes when the entry changed. */
  private readonly written = new Map<string, string>();
  private readonly watchers = new WatcherSet();
  private readonly tree = new TreeWatch(this);
  private closed = false;

  /** The session with the given timeout, created on first use. */
  async session(timeoutMs = DEFAULT_SESSION_MS): Promise<Session> {
    this.zk ??= importOptional<ZkModule>("node-zookeeper-client", "zookeeper registry");
    const zk = await this.zk;
    // Checked after the await: a close() meanwhile must not be followed by a new connection.
    if (this.closed) throw new Error("zookeeper registry: closed");
    let session = this.sessions.get(timeoutMs);
    if (!session) {
      const connectionString = this.serverAddresses(DEFAULT_ADDRESS).join(",");
      session = new Session(
        zk,
        connectionString,
        timeoutMs,
        this.timeout,
        () => this.onSessionExpired(timeoutMs),
        () => this.noteOutage(),
      );
      this.sessions.set(timeoutMs, session);
    }
    return session;
  }

  /** The znodes and watches of an expired session are gone; the next session starts from scratch. */
  private onSessionExpired(timeoutMs: number): void {
    this.written.clear();
    if (timeoutMs === DEFAULT_SESSION_MS) this.tree.sessionReplaced();
  }

  async isMissing(err: unknown): Promise<boolean> {
    const zk = await this.zk;
    return !!zk && typeof (err as ZkError).getCode === "function" && (err as ZkError).getCode() === zk.Exception.NO_NODE;
  }

  async register(service: Service, opts: RegisterOptions = {}): Promise<void> {
    const ttlMs = opts.ttl && opts.ttl > 0 ? Math.ceil(opts.ttl * 1000) : DEFAULT_SESSION_MS;
    const session = await this.session(ttlMs);
    const zk = (await this.zk)!;
    for (const single of splitByNode(service)) {
      const path = nodePath(single.name, single.nodes[0]!.id, ZK_PREFIX);
      const data = JSON.stringify(single);
      const exists = await session.call<unknown>("exists", (c, cb) => c.exists(path, undefined, cb));
      if (!exists) {
        await session.call("mkdirp", (c, cb) => c.mkdirp(servicePath(single.name, ZK_PREFIX), cb));
        await session.call("create", (c, cb) => c.create(path, Buffer.from(data), zk.CreateMode.EPHEMERAL, cb));
      } else if (this.written.get(path) !== data) {
        await session.call("setData", (c, cb) => c.setData(path, Buffer.from(data), -1, cb));
      }
      this.written.set(path, data);
    }
  }

  async deregister(service: Service): Promise<void> {
    const session = await this.session();
    for (const node of service.nodes) {
      const path = nodePath(service.name, node.id, ZK_PREFIX);
      this.written.delete(path);
      try {
        await session.call<void>("remove", (c, cb) => c.remove(path, -1, cb));
      } catch (err) {
        if (!(await this.isMissing(err))) throw err;
      }
    }
  }

  /** Children of a path; undefined when it does not exist. */
  async children(session: Session, path: string, watcher?: ZkWatcher): Promise<string[] | undefined> {
    try {
      return await session.call<string[]>("getChildren", (c, cb) => c.getChildren(path, watcher, cb));
    } catch (err) {
      if (await this.isMissing(err)) return undefined;
      throw err;
    }
  }

  /** The service stored at a node path; undefined when the znode is gone or holds something else. */
  async entry(session: Session, path: string, watcher?: ZkWatcher): Promise<Service | undefined> {
    try {
      const data = await session.call<Buffer>("getData", (c, cb) => c.getData(path, watcher, cb));
      return decodeService(data?.toString() ?? "");
    } catch (err) {
      if (await this.isMissing(err)) return undefined;
      throw err;
    }
  }

  private async serviceEntries(session: Session, name: string): Promise<Service[]> {
    const dir = servicePath(name, ZK_PREFIX);
    const nodes = (await this.children(session, dir)) ?? [];
    const entries = await Promise.all(nodes.map((id) => this.entry(session, `${dir}/${id}`)));
    return entries.filter((e) => e !== undefined);
  }

  async getService(name: string): Promise<Service[]> {
    return servicesOrNotFound(name, await this.serviceEntries(await this.session(), name));
  }

  async listServices(): Promise<Service[]> {
    const session = await this.session();
    const names = (await this.children(session, ZK_PREFIX)) ?? [];
    const entries = await Promise.all(names.map((name) => this.serviceEntries(session, name)));
    return serviceSummaries(entries.flat());
  }

  watch(opts?: WatchOptions): Watcher {
    const watcher = this.watchers.add(opts);
    this.tree.start();
    return watcher;
  }

  emit(...args: Parameters<WatcherSet["emit"]>): void {
    this.watchers.emit(...args);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.tree.stop();
    this.watchers.stopAll();
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }

  override toString(): string {
    return "zookeeper";
  }
}

/**
 * Mirrors /micro-registry/<service>/<node> through one-shot ZooKeeper watches and turns each
 * change into watch events by diffing snapshots. A path is re-armed only after its watch fired,
 * so watches never pile up on paths that did not change.
 */
class TreeWatch {
  private snapshot = new Map<string, Service>();
  private readonly armed = new Set<string>();
  private running = false;
  private syncing = false;
  private dirty = false;
  private retryTimer?: NodeJS.Timeout;

  constructor(private readonly registry: ZookeeperRegistry) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.requestSync();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.retryTimer);
  }

  /** The old session's watches died with it: arm everything again on the new one. */
  sessionReplaced(): void {
    this.armed.clear();
    if (this.running) this.requestSync();
  }

  /** A one-shot watcher for a path; firing disarms it and asks for a sync. */
  private arm(key: string): ZkWatcher | undefined {
    if (this.armed.has(key)) return undefined;
    this.armed.add(key);
    return () => {
      this.armed.delete(key);
      this.requestSync();
    };
  }

  private requestSync(): void {
    if (!this.running) return;
    if (this.syncing) {
      this.dirty = true;
      return;
    }
    this.syncing = true;
    void this.sync().finally(() => {
      this.syncing = false;
      if (this.dirty) {
        this.dirty = false;
        this.requestSync();
      }
    });
  }

  /**
   * Reads path with a watch armed on it. ZooKeeper sets no watch when a read finds nothing
   * (only exists does), so then the key is disarmed and the next sync tries again.
   */
  private async watched<T>(key: string, read: (watcher: ZkWatcher | undefined) => Promise<T | undefined>): Promise<T | undefined> {
    const result = await read(this.arm(key));
    if (result === undefined) this.armed.delete(key);
    return result;
  }

  private async sync(): Promise<void> {
    try {
      const session = await this.registry.session();
      const next = new Map<string, Service>();
      // The prefix may not exist yet: an exists-watch tells us when it appears.
      const prefixExists = await session.call<unknown>("exists", (c, cb) =>
        c.exists(ZK_PREFIX, this.arm(`exists:${ZK_PREFIX}`), cb),
      );
      const names = prefixExists
        ? await this.watched(`children:${ZK_PREFIX}`, (w) => this.registry.children(session, ZK_PREFIX, w))
        : undefined;
      for (const name of names ?? []) {
        const dir = `${ZK_PREFIX}/${name}`;
        for (const id of (await this.watched(`children:${dir}`, (w) => this.registry.children(session, dir, w))) ?? []) {
          const path = `${dir}/${id}`;
          const key = `data:${path}`;
          // An armed data watch that has not fired means the entry we hold is current.
          const entry =
            this.armed.has(key) && this.snapshot.has(path)
              ? this.snapshot.get(path)
              : await this.watched(key, (w) => this.registry.entry(session, path, w));
          if (entry) next.set(path, entry);
        }
      }
      this.publish(next);
    } catch (err) {
      if (!this.running) return;
      // A failed read may or may not have set its watch; re-arming all costs at most a spare sync.
      this.armed.clear();
      logger.debug({ err }, "zookeeper registry: watch sync failed, retrying");
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.requestSync(), RESYNC_RETRY_MS);
    }
  }

  private publish(next: Map<string, Service>): void {
    if (!this.running) return;
    diffSnapshots(this.snapshot, next, (action, service) => this.registry.emit(action, service));
    this.snapshot = next;
  }
}
