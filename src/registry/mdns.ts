/**
 * Zero-configuration registry over multicast DNS, bound to the loopback interface unless told
 * otherwise (--mdns_interface / MICRO_MDNS_INTERFACE), so nothing leaves the machine by default.
 *
 * Each node is a DNS-SD instance of _tsmicro._tcp.local whose TXT record carries the JSON of the
 * service holding that node. Every registry instance listens all the time and keeps a table of
 * the nodes it has heard, expiring each when its record TTL passes without a re-announce; a
 * deregister sends a goodbye (TTL 0). A lookup only waits on the network the first time, to
 * collect the answers to one query.
 */
import { createHash } from "node:crypto";
import os from "node:os";
import makeMdns from "multicast-dns";
import type { Answer, TxtAnswer } from "dns-packet";
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

const SERVICE_TYPE = "_tsmicro._tcp.local";
const MDNS_GROUP = "224.0.0.251";
const DEFAULT_TTL_SECONDS = 60;
const TXT_CHUNK = 255;

interface Heard {
  service: Service;
  expiresAt: number;
}

/** DNS labels are at most 63 bytes and dot-free; node ids are neither, so instances use a hash. */
const instanceName = (serviceName: string, nodeId: string) =>
  `${createHash("sha1").update(`${serviceName}\0${nodeId}`).digest("hex").slice(0, 32)}.${SERVICE_TYPE}`;

/** Accepts an IPv4 address or an interface name ("lo", "eth0"). */
export function resolveInterface(value: string): string {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(value)) return value;
  const found = os.networkInterfaces()[value]?.find((a) => a.family === "IPv4");
  if (!found) throw new Error(`mdns: no IPv4 address on interface "${value}"`);
  return found.address;
}

export default class MdnsRegistry extends RegistryBase implements Registry {
  private mdns?: makeMdns.MulticastDNS;
  private ready?: Promise<void>;
  private readonly heard = new Map<string, Heard>();
  private readonly local = new Map<string, { service: Service; ttl: number }>();
  private readonly watchers = new WatcherSet();
  private sweeper?: NodeJS.Timeout;
  private warmed?: Promise<void>;

  /** Milliseconds the first lookup listens for answers. */
  private get listenMs(): number {
    return this.opts.timeout ?? 150;
  }

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    const iface = resolveInterface(String(this.opts.interface ?? "127.0.0.1"));
    const mdns = makeMdns({ interface: iface, bind: "0.0.0.0", ip: MDNS_GROUP, port: 5353, multicast: true, loopback: true, reuseAddr: true });
    this.mdns = mdns;
    mdns.on("response", (packet) => this.onResponse([...packet.answers, ...(packet.additionals ?? [])]));
    mdns.on("query", (packet) => {
      if (packet.questions.some((q) => q.name === SERVICE_TYPE && q.type === "PTR")) {
        for (const [instance, { service, ttl }] of this.local) mdns.respond({ answers: this.records(instance, service, ttl) });
      }
    });
    mdns.on("warning", () => {}); // malformed packets from others are not our failure
    this.sweeper = setInterval(() => this.expire(), 250);
    this.sweeper.unref();
    this.ready = new Promise((resolve, reject) => {
      mdns.once("ready", resolve);
      mdns.once("error", reject);
    });
    return this.ready;
  }

  private records(instance: string, service: Service, ttl: number): Answer[] {
    const json = Buffer.from(JSON.stringify(service));
    const chunks: Buffer[] = [];
    for (let i = 0; i < json.length; i += TXT_CHUNK) chunks.push(json.subarray(i, i + TXT_CHUNK));
    const port = Number(service.nodes[0]!.address.split(":").pop());
    return [
      { name: SERVICE_TYPE, type: "PTR", ttl, data: instance },
      { name: instance, type: "SRV", ttl, data: { port, target: `${instance.split(".")[0]}.local` } },
      { name: instance, type: "TXT", ttl, data: chunks },
    ];
  }

  private onResponse(answers: Answer[]): void {
    for (const a of answers) {
      if (a.type !== "TXT" || !a.name.endsWith(`.${SERVICE_TYPE}`)) continue;
      const ttl = (a as TxtAnswer).ttl ?? 0;
      if (ttl === 0) {
        this.forget(a.name);
        continue;
      }
      let service: Service;
      try {
        const data = (a as TxtAnswer).data;
        const parts = (Array.isArray(data) ? data : [data]).map((d) => (typeof d === "string" ? Buffer.from(d) : d));
        service = JSON.parse(Buffer.concat(parts).toString()) as Service;
        if (typeof service.name !== "string" || !Array.isArray(service.nodes) || service.nodes.length !== 1) continue;
      } catch {
        continue; // not one of ours
      }
      this.remember(a.name, service, ttl);
    }
  }

  private remember(instance: string, service: Service, ttlSeconds: number): void {
    const previous = this.heard.get(instance);
    this.heard.set(instance, { service, expiresAt: Date.now() + ttlSeconds * 1000 });
    if (!previous) this.watchers.emit("create", service);
    else if (JSON.stringify(previous.service) !== JSON.stringify(service)) this.watchers.emit("update", service);
  }

  private forget(instance: string): void {
    const previous = this.heard.get(instance);
    if (previous && this.heard.delete(instance)) this.watchers.emit("delete", previous.service);
  }

  private expire(): void {
    const now = Date.now();
    for (const [instance, h] of this.heard) if (h.expiresAt <= now) this.forget(instance);
  }

  async register(service: Service, opts: RegisterOptions = {}): Promise<void> {
    await this.start();
    const ttl = opts.ttl && opts.ttl > 0 ? Math.ceil(opts.ttl) : DEFAULT_TTL_SECONDS;
    for (const node of service.nodes) {
      const single: Service = { ...cloneService(service), nodes: [structuredClone(node)] };
      const instance = instanceName(service.name, node.id);
      this.local.set(instance, { service: single, ttl });
      this.remember(instance, single, ttl);
      this.mdns!.respond({ answers: this.records(instance, single, ttl) });
    }
  }

  async deregister(service: Service): Promise<void> {
    await this.start();
    for (const node of service.nodes) {
      const instance = instanceName(service.name, node.id);
      const entry = this.local.get(instance);
      this.local.delete(instance);
      this.forget(instance);
      if (entry) await new Promise<void>((resolve) => this.mdns!.respond({ answers: this.records(instance, entry.service, 0) }, () => resolve()));
    }
  }

  /** The first lookup asks everyone and listens for a moment; later ones read the live table. */
  private warm(): Promise<void> {
    this.warmed ??= this.start().then(
      () =>
        new Promise<void>((resolve) => {
          this.mdns!.query({ questions: [{ name: SERVICE_TYPE, type: "PTR" }] });
          setTimeout(resolve, this.listenMs);
        }),
    );
    return this.warmed;
  }

  private liveServices(): Service[] {
    this.expire();
    return [...this.heard.values()].map((h) => h.service);
  }

  async getService(name: string): Promise<Service[]> {
    await this.warm();
    const found = mergeByVersion(this.liveServices().filter((s) => s.name === name));
    if (found.length === 0) throw new ServiceNotFoundError(name);
    return found;
  }

  async listServices(): Promise<Service[]> {
    await this.warm();
    return mergeByVersion(this.liveServices()).map((s) => ({ ...s, nodes: [] }));
  }

  watch(opts?: WatchOptions): Watcher {
    void this.warm();
    return this.watchers.add(opts);
  }

  async close(): Promise<void> {
    if (!this.mdns) return;
    const mdns = this.mdns;
    // Goodbyes for nodes nobody deregistered, sent before the socket goes.
    await Promise.all(
      [...this.local].map(([instance, { service }]) => new Promise<void>((resolve) => mdns.respond({ answers: this.records(instance, service, 0) }, () => resolve()))),
    );
    this.local.clear();
    clearInterval(this.sweeper);
    this.watchers.stopAll();
    this.mdns = undefined;
    this.ready = undefined;
    this.warmed = undefined;
    await new Promise<void>((resolve) => mdns.destroy(() => resolve()));
  }

  override toString(): string {
    return "mdns";
  }
}
