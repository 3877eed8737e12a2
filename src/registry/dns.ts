/**
 * Read-only registry over DNS, for platforms that publish their services there (Kubernetes,
 * Consul DNS, plain zone files). A service name resolves through SRV records
 * _<service>._tcp.<domain> (as go-micro's dns selector looks it up): each target's A/AAAA
 * addresses with the record's port become nodes. Without SRV records, the A/AAAA records of
 * <service>.<domain> are used with the `port` option. register/deregister are refused; watch
 * re-resolves the names it follows every `pollInterval` ms and reports what changed.
 */
import { promises as dns } from "node:dns";
import {
  RegistryBase,
  RegistryUnavailableError,
  ServiceNotFoundError,
  WatcherSet,
  diffSnapshots,
  joinHostPort,
  type Node,
  type Registry,
  type RegistryOptions,
  type Service,
  type WatchOptions,
  type Watcher,
} from "./registry.ts";

const DEFAULT_POLL_INTERVAL_MS = 30_000;
/** Answers that mean "no such record", as opposed to "could not ask". */
const NO_RECORD = new Set<string>([dns.NOTFOUND, dns.NODATA]);

/** DNS knows no versions: every node belongs to the one unversioned service. */
const unversioned = (name: string, nodes: Node[]): Service => ({ name, version: "", metadata: {}, endpoints: [], nodes });
const byNode = (name: string, nodes: Node[]) => new Map(nodes.map((node) => [node.id, unversioned(name, [node])]));

const qualify = (name: string, domain: string) => (domain ? `${name}.${domain.replace(/^\.|\.$/g, "")}` : name);

export class ReadOnlyRegistryError extends Error {
  constructor() {
    super("registry: dns is read-only; publish services in DNS instead");
    this.name = "ReadOnlyRegistryError";
  }
}

export interface DnsRegistryOptions extends RegistryOptions {
  /** Appended to service names that are not fully qualified. */
  domain?: string;
  /** The port of names that have only A/AAAA records. */
  port?: number;
  /** Milliseconds between the lookups of a watch. */
  pollInterval?: number;
}

export default class DnsRegistry extends RegistryBase implements Registry {
  protected declare opts: DnsRegistryOptions;
  private readonly resolver: dns.Resolver;
  private readonly watchers = new WatcherSet();
  /** Names watch() follows, with the nodes last resolved for each (keyed by node id). */
  private readonly followed = new Map<string, Map<string, Service>>();
  private poller?: NodeJS.Timeout;
  /** A watch without a service is running: every name looked up gets followed. */
  private followLookups = false;

  /** addresses are DNS servers (host:port). */
  constructor(opts: DnsRegistryOptions = {}) {
    super(opts);
    this.resolver = new dns.Resolver({ timeout: this.timeout, tries: 1 });
    if (opts.addresses?.length) this.resolver.setServers(opts.addresses);
  }

  override init(opts: DnsRegistryOptions): void {
    super.init(opts);
    if (opts.addresses?.length) this.resolver.setServers(opts.addresses);
  }

  private get domain(): string {
    return String(this.opts.domain ?? "");
  }

  /** Records of one type; [] when the name has none, RegistryUnavailableError when DNS did not answer. */
  private async lookup<T>(what: string, query: () => Promise<T[]>): Promise<T[]> {
    try {
      return await query();
    } catch (err) {
      if (NO_RECORD.has((err as NodeJS.ErrnoException).code ?? "")) return [];
      throw new RegistryUnavailableError(`dns (${what})`, err);
    }
  }

  private async addresses(host: string): Promise<string[]> {
    const [v4, v6] = await Promise.all([
      this.lookup(`A ${host}`, () => this.resolver.resolve4(host)),
      this.lookup(`AAAA ${host}`, () => this.resolver.resolve6(host)),
    ]);
    return [...v4, ...v6];
  }

  private async resolveNodes(name: string): Promise<Node[]> {
    const srvName = qualify(`_${name}._tcp`, this.domain);
    const records = await this.lookup(`SRV ${srvName}`, () => this.resolver.resolveSrv(srvName));
    const targets: Array<{ host: string; port: number }> = records.length
      ? records.map((r) => ({ host: r.name, port: r.port }))
      : this.opts.port
        ? [{ host: qualify(name, this.domain), port: Number(this.opts.port) }]
        : [];
    const nodes: Node[] = [];
    for (const { host, port } of targets) {
      for (const ip of await this.addresses(host)) {
        const address = joinHostPort(ip, port);
        nodes.push({ id: `${name}-${address}`, address, metadata: { host } });
      }
    }
    return nodes;
  }

  async getService(name: string): Promise<Service[]> {
    const nodes = await this.resolveNodes(name);
    if (nodes.length === 0) throw new ServiceNotFoundError(name);
    if (this.followLookups && !this.followed.has(name)) this.followed.set(name, byNode(name, nodes));
    return [unversioned(name, nodes)];
  }

  /** DNS cannot enumerate services: only the ones being watched are known. */
  async listServices(): Promise<Service[]> {
    return [...this.followed.keys()].map((name) => ({ name, version: "", nodes: [] }));
  }

  async register(): Promise<void> {
    throw new ReadOnlyRegistryError();
  }

  async deregister(): Promise<void> {
    throw new ReadOnlyRegistryError();
  }

  /** Follows opts.service (a watch without a service follows the names looked up through it). */
  watch(opts?: WatchOptions): Watcher {
    const watcher = this.watchers.add(opts);
    if (!opts?.service) this.followLookups = true;
    else if (!this.followed.has(opts.service)) {
      this.followed.set(opts.service, new Map());
      void this.poll(opts.service);
    }
    this.poller ??= setInterval(() => {
      for (const name of this.followed.keys()) void this.poll(name);
    }, Number(this.opts.pollInterval ?? DEFAULT_POLL_INTERVAL_MS));
    this.poller.unref();
    return watcher;
  }

  private async poll(name: string): Promise<void> {
    let nodes: Node[];
    try {
      nodes = await this.resolveNodes(name);
    } catch {
      return; // DNS unreachable: keep the last answer, try again next round
    }
    const previous = this.followed.get(name);
    if (!previous) return;
    const next = byNode(name, nodes);
    diffSnapshots(previous, next, (action, service) => this.watchers.emit(action, service));
    this.followed.set(name, next);
  }

  async close(): Promise<void> {
    clearInterval(this.poller);
    this.poller = undefined;
    this.watchers.stopAll();
    this.followed.clear();
    this.resolver.cancel();
  }

  override toString(): string {
    return "dns";
  }
}
