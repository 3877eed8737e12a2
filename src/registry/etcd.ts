/**
 * etcd registry, in go-micro's layout: key /micro/registry/<service>/<node-id>, value the JSON of
 * the service holding that one node, attached to a lease of the register TTL. Each register call
 * keeps the lease alive (and writes the value only when it changed); a lease etcd no longer knows
 * (expired during an outage, revoked) is granted again and the key written anew.
 */
import type { Etcd3, IKeyValue, IOptions, Lease, Watcher as EtcdWatcher } from "etcd3";
import { importOptional } from "../cmd/optional-package.ts";
import {
  REGISTRY_PREFIX,
  RegistryBase,
  RegistryUnavailableError,
  WatcherSet,
  decodeService,
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

type EtcdModule = typeof import("etcd3");

const DEFAULT_ADDRESS = "127.0.0.1:2379";

type FaultHandling = NonNullable<IOptions["faultHandling"]>;
type Policy = ReturnType<NonNullable<FaultHandling["host"]>>;
type Backoff = NonNullable<FaultHandling["watchBackoff"]>;

/**
 * etcd3 wraps each server in a circuit breaker that, once open, refuses every call for 5 s even
 * after the server is back, so a re-register right after an outage failed and leases lapsed.
 * The registry has its own cadence (renewals, the cache's retries), so calls reach the server
 * (etcd3's retry of a failed call, within its deadline, stays).
 */
const passThrough: Policy = {
  _altReturn: undefined as never,
  onSuccess: () => ({ dispose: () => undefined }),
  onFailure: () => ({ dispose: () => undefined }),
  execute: async (fn) => fn({ signal: new AbortController().signal }),
};

/** The watch reconnects within a second of the server's return (etcd3's default backs off to 30 s). */
const watchBackoff = (duration = 100): Backoff => ({ duration, next: () => watchBackoff(Math.min(duration * 2, 1000)) });

interface Registration {
  /** Absent for ttl 0: the key then lives until deregistered. */
  lease?: Lease;
  ttl: number;
  value: string;
}

export default class EtcdRegistry extends RegistryBase implements Registry {
  private connecting?: Promise<{ etcd: EtcdModule; client: Etcd3 }>;
  private readonly registrations = new Map<string, Registration>();
  private readonly watchers = new WatcherSet();
  private prefixWatchStarted = false;
  private prefixWatch?: EtcdWatcher;
  private closed = false;

  private connect(): Promise<{ etcd: EtcdModule; client: Etcd3 }> {
    this.connecting ??= importOptional<EtcdModule>("etcd3", "etcd registry").then((etcd) => {
      const hosts = this.serverAddresses(DEFAULT_ADDRESS).map((a) =>
        /^https?:\/\//.test(a) ? a : `http://${a}`,
      );
      const client = new etcd.Etcd3({
        hosts,
        dialTimeout: this.timeout,
        faultHandling: { host: () => passThrough, watchBackoff: watchBackoff() },
        // Streams (watch, keepalive) live on; unary calls get the registry's deadline.
        defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + this.timeout }),
      });
      return { etcd, client };
    });
    return this.connecting;
  }

  /**
   * Runs an etcd call. A lease etcd does not know is passed through (the caller grants a new one);
   * every other failure means etcd could not do it now, reported as RegistryUnavailableError.
   */
  private async call<T>(what: string, fn: (client: Etcd3) => Promise<T>): Promise<T> {
    const { client, etcd } = await this.connect();
    try {
      return await fn(client);
    } catch (err) {
      if (err instanceof etcd.EtcdLeaseInvalidError) throw err;
      this.noteOutage();
      throw new RegistryUnavailableError(`etcd (${what})`, err);
    }
  }

  async register(service: Service, opts: RegisterOptions = {}): Promise<void> {
    const ttl = Math.max(0, Math.ceil(opts.ttl ?? 0));
    await Promise.all(splitByNode(service).map((single) => this.registerNode(single, ttl)));
  }

  private async registerNode(single: Service, ttl: number): Promise<void> {
    const key = nodePath(single.name, single.nodes[0]!.id);
    const value = JSON.stringify(single);
    const current = this.registrations.get(key);
    if (current && current.ttl === ttl && (await this.keepAlive(current))) {
      if (current.value !== value) {
        await this.call("put", (client) => (current.lease ? current.lease.put(key) : client.put(key)).value(value).exec());
        current.value = value;
      }
      return;
    }
    await this.call("put", async (client) => {
      const lease = ttl > 0 ? client.lease(ttl, { autoKeepAlive: false }) : undefined;
      try {
        await (lease ? lease.put(key) : client.put(key)).value(value).exec();
      } catch (err) {
        lease?.release();
        throw err;
      }
      current?.lease?.release();
      this.registrations.set(key, { lease, ttl, value });
    });
  }

  /** False when etcd no longer knows the lease (it expired or was revoked): the caller grants a new one. */
  private async keepAlive({ lease }: Registration): Promise<boolean> {
    if (!lease) return true;
    if (lease.revoked()) return false;
    const { etcd } = await this.connect();
    try {
      await this.call("keepalive", () => lease.keepaliveOnce({ deadline: Date.now() + this.timeout }));
      return true;
    } catch (err) {
      if (err instanceof etcd.EtcdLeaseInvalidError) return false;
      throw err;
    }
  }

  async deregister(service: Service): Promise<void> {
    for (const node of service.nodes) {
      const key = nodePath(service.name, node.id);
      const registration = this.registrations.get(key);
      this.registrations.delete(key);
      await this.call("delete", (client) => client.delete().key(key).exec());
      // Revoking is tidying up (the key is gone already), so it may fail quietly.
      await registration?.lease?.revoke().catch(() => undefined);
    }
  }

  private async entries(prefix: string): Promise<Service[]> {
    const values = await this.call("get", (client) => client.getAll().prefix(prefix).strings());
    return Object.values(values).flatMap((text) => decodeService(text) ?? []);
  }

  async getService(name: string): Promise<Service[]> {
    return servicesOrNotFound(name, await this.entries(`${servicePath(name)}/`));
  }

  async listServices(): Promise<Service[]> {
    return serviceSummaries(await this.entries(`${REGISTRY_PREFIX}/`));
  }

  /** One prefix watch per registry feeds every watcher; etcd resumes it by revision after a reconnect. */
  watch(opts?: WatchOptions): Watcher {
    const watcher = this.watchers.add(opts);
    if (!this.prefixWatchStarted) {
      this.prefixWatchStarted = true;
      void this.startPrefixWatch();
    }
    return watcher;
  }

  private async startPrefixWatch(): Promise<void> {
    const emitFrom = (kv: IKeyValue | undefined, action: "create" | "update" | "delete") => {
      const service = kv && decodeService(kv.value.toString());
      if (service) this.watchers.emit(action, service);
    };
    try {
      const { client } = await this.connect();
      const w = await client.watch().prefix(`${REGISTRY_PREFIX}/`).withPreviousKV().create();
      if (this.closed) return void (await w.cancel());
      w.on("put", (kv, previous) => {
        if (!previous) emitFrom(kv, "create");
        else if (!kv.value.equals(previous.value)) emitFrom(kv, "update");
      });
      // The deleted kv carries no value; the previous one holds the node that went away.
      w.on("delete", (_kv, previous) => emitFrom(previous, "delete"));
      w.on("error", (err) => this.log.warn({ err }, "etcd registry: watch error"));
      // The stream's loss and its return mark an outage (the watch resumes by revision meanwhile).
      let lost = false;
      w.on("disconnected", () => {
        lost = true;
        this.noteOutage();
      });
      w.on("connected", () => {
        if (lost) this.noteOutage();
        lost = false;
      });
      this.prefixWatch = w;
    } catch (err) {
      if (this.closed) return;
      this.log.warn({ err }, "etcd registry: could not start the watch");
      this.watchers.stopAll();
      this.prefixWatchStarted = false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watchers.stopAll();
    await this.prefixWatch?.cancel().catch(() => undefined);
    for (const r of this.registrations.values()) r.lease?.release();
    this.registrations.clear();
    if (this.connecting) (await this.connecting).client.close();
  }

  override toString(): string {
    return "etcd";
  }
}
