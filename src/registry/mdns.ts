/**
 * Zero-configuration registry over multicast DNS in go-micro's format, bound to the loopback
 * interface unless told otherwise (--mdns_interface / MICRO_MDNS_INTERFACE), so nothing leaves the
 * machine by default.
 *
 * As go-micro's mdns registry: a node is the instance "<node-id>.<service>.micro." with an SRV
 * (port), an A record and a TXT record holding hex(zlib(JSON {Metadata, Service, Version,
 * Endpoints})) in strings of at most 255 characters; "<service>._services.micro." enumerates
 * services. A lookup sends a PTR query for "<service>.micro." from a socket of its own and takes
 * the answers (each carrying the question, sent back to the asker) that arrive within the
 * timeout: nodes that do not answer are gone. tsmicro nodes also announce themselves when they
 * register, and send a goodbye (TTL 0) when they deregister, which keeps watchers current; a node
 * heard that way and not again expires with its record TTL.
 */
import { createHash } from "node:crypto";
import dgram from "node:dgram";
import os from "node:os";
import { deflateSync, inflateSync } from "node:zlib";
import makeMdns from "multicast-dns";
import type { Answer, Question, StringAnswer, SrvAnswer, TxtAnswer } from "dns-packet";
import {
  RegistryBase,
  ServiceNotFoundError,
  WatcherSet,
  cloneService,
  mergeByVersion,
  type Endpoint,
  type Registry,
  type RegistryOptions,
  type RegisterOptions,
  type Service,
  type WatchOptions,
  type Watcher,
} from "./registry.ts";
import { parseHostPort } from "../address.ts";

const DOMAIN = "micro";
const SERVICES = `_services.${DOMAIN}`;
const MDNS_GROUP = "224.0.0.251";
const MDNS_PORT = 5353;
const DEFAULT_TTL_SECONDS = 120; // go-micro's record TTL
const TXT_CHUNK = 255;
/** go-micro's port in the services enumeration records. */
const ENUM_PORT = 9999;

interface Heard {
  service: Service;
  expiresAt: number;
}

/** go-micro's TXT payload (a Go struct without JSON tags). */
interface MdnsTxt {
  Metadata?: Record<string, string> | null;
  Service: string;
  Version: string;
  Endpoints?: Endpoint[] | null;
  /** tsmicro's addition (go-micro ignores the key): the service's own metadata. */
  ServiceMetadata?: Record<string, string>;
}

/**
 * DNS labels hold at most 63 bytes. A node id that does not fit (go-micro's own could not register
 * it) is named by a hash, and its id travels in the node metadata under this key.
 */
const LONG_NODE_ID = "mdns_node_id";
const fitsLabels = (name: string) => name.split(".").every((label) => label !== "" && Buffer.byteLength(label) <= 63);
const nodeLabel = (nodeId: string) => (fitsLabels(nodeId) ? nodeId : createHash("sha1").update(nodeId).digest("hex"));
const instanceName = (serviceName: string, nodeId: string) => `${nodeLabel(nodeId)}.${serviceName}.${DOMAIN}`;

/** Accepts an IPv4 address or an interface name ("lo", "eth0"). */
export function resolveInterface(value: string): string {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(value)) return value;
  const found = os.networkInterfaces()[value]?.find((a) => a.family === "IPv4");
  if (!found) throw new Error(`mdns: no IPv4 address on interface "${value}"`);
  return found.address;
}

export function encodeTxt(service: Service): string[] {
  const node = service.nodes[0]!;
  const metadata = fitsLabels(node.id) ? (node.metadata ?? {}) : { ...node.metadata, [LONG_NODE_ID]: node.id };
  const txt: MdnsTxt = { Metadata: metadata, Service: service.name, Version: service.version, Endpoints: service.endpoints ?? [] };
  if (service.metadata && Object.keys(service.metadata).length > 0) txt.ServiceMetadata = service.metadata;
  const hex = deflateSync(JSON.stringify(txt)).toString("hex");
  const chunks: string[] = [];
  for (let i = 0; i < hex.length; i += TXT_CHUNK) chunks.push(hex.slice(i, i + TXT_CHUNK));
  return chunks;
}

export function decodeTxt(chunks: (string | Uint8Array)[]): MdnsTxt | undefined {
  try {
    const hex = chunks.map((c) => (typeof c === "string" ? c : Buffer.from(c).toString())).join("");
    const txt = JSON.parse(inflateSync(Buffer.from(hex, "hex")).toString()) as MdnsTxt;
    return typeof txt.Service === "string" ? txt : undefined;
  } catch {
    return undefined; // not go-micro's format
  }
}

/**
 * Resolves once the datagrams already waiting in the sockets have been read. After a busy stretch
 * longer than a listen window (or a record's TTL), node can run the timer that ends it before it
 * reads the sockets again, which would then find no answer (or an expired record) while the
 * answers that came in time wait unread; setImmediate runs after the next read.
 */
const pendingAnnouncementsRead = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The records of one node: PTR from its service, SRV and A (target: the instance) and TXT. */
function nodeRecords(service: Service, ttl: number): Answer[] {
  const node = service.nodes[0]!;
  const instance = instanceName(service.name, node.id);
  const { host, port } = parseHostPort(node.address);
  const answers: Answer[] = [
    { name: `${service.name}.${DOMAIN}`, type: "PTR", ttl, data: instance },
    { name: instance, type: "SRV", ttl, data: { port, target: instance } },
    { name: instance, type: "TXT", ttl, data: encodeTxt(service) },
  ];
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) answers.push({ name: instance, type: "A", ttl, data: host });
  else if (host.includes(":")) answers.push({ name: instance, type: "AAAA", ttl, data: host });
  return answers;
}

/** The services enumeration records of one service, as go-micro answers "_services.micro.". */
function enumRecords(serviceName: string, ttl: number): Answer[] {
  const instance = `${serviceName}.${SERVICES}`;
  return [
    { name: SERVICES, type: "PTR", ttl, data: instance },
    { name: instance, type: "SRV", ttl, data: { port: ENUM_PORT, target: instance } },
    { name: instance, type: "TXT", ttl, data: [] },
    { name: instance, type: "A", ttl, data: "0.0.0.0" },
  ];
}

/** Nodes (one Service each, with the record TTL) and enumerated service names in a response. */
function parseResponse(records: Answer[]): { nodes: Array<{ instance: string; service: Service; ttl: number }>; names: string[] } {
  const srv = new Map<string, SrvAnswer>();
  const txt = new Map<string, TxtAnswer>();
  const ips = new Map<string, string>();
  const names: string[] = [];
  for (const r of records) {
    if (r.type === "SRV") srv.set(r.name, r);
    else if (r.type === "TXT") txt.set(r.name, r);
    else if (r.type === "A" || r.type === "AAAA") ips.set(r.name, (r as StringAnswer).data);
    else if (r.type === "PTR" && r.name === SERVICES && (r.ttl ?? 1) > 0) names.push((r as StringAnswer).data.slice(0, -(SERVICES.length + 1)));
  }
  const nodes = [];
  for (const [instance, t] of txt) {
    if (instance.endsWith(`.${SERVICES}`)) continue;
    const decoded = decodeTxt(Array.isArray(t.data) ? t.data : [t.data]);
    if (!decoded) continue;
    const suffix = `.${decoded.Service}.${DOMAIN}`;
    if (!instance.endsWith(suffix)) continue;
    const ttl = t.ttl ?? 0;
    const s = srv.get(instance);
    const ip = s && (ips.get(s.data.target) ?? ips.get(instance));
    // A goodbye (TTL 0) needs no address; a live node does.
    if (ttl > 0 && (!s || !ip)) continue;
    const address = s && ip ? (ip.includes(":") ? `[${ip}]:${s.data.port}` : `${ip}:${s.data.port}`) : "";
    const { [LONG_NODE_ID]: longId, ...metadata } = decoded.Metadata ?? {};
    const service: Service = {
      name: decoded.Service,
      version: decoded.Version ?? "",
      metadata: decoded.ServiceMetadata ?? {},
      endpoints: decoded.Endpoints ?? [],
      nodes: [{ id: longId ?? instance.slice(0, -suffix.length), address, metadata }],
    };
    nodes.push({ instance, service, ttl });
  }
  return { nodes, names };
}

export interface MdnsRegistryOptions extends RegistryOptions {
  /** The interface (name or IPv4 address) to multicast on. Default loopback (127.0.0.1). */
  interface?: string;
}

export default class MdnsRegistry extends RegistryBase implements Registry {
  protected declare opts: MdnsRegistryOptions;
  /** Joined to the group: answers queries, hears announcements and goodbyes. */
  private mdns?: makeMdns.MulticastDNS;
  /** On a port of its own: asks, and gets the answers go-micro sends back to the asker. */
  private querier?: makeMdns.MulticastDNS;
  private ready?: Promise<void>;
  private readonly heard = new Map<string, Heard>();
  private readonly local = new Map<string, { service: Service; ttl: number }>();
  private readonly watchers = new WatcherSet();
  private sweeper?: NodeJS.Timeout;
  private warmed?: Promise<void>;
  /** The lookup in progress per question name: answers to it are collected here. */
  private readonly rounds = new Map<string, (records: Answer[]) => void>();

  /** Milliseconds a lookup listens for answers. */
  private get listenMs(): number {
    return this.opts.timeout ?? 150;
  }

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    const iface = resolveInterface(String(this.opts.interface ?? "127.0.0.1"));
    const mdns = makeMdns({ interface: iface, bind: "0.0.0.0", ip: MDNS_GROUP, port: MDNS_PORT, multicast: true, loopback: true, reuseAddr: true });
    this.mdns = mdns;
    mdns.on("response", (packet) => this.onAnnouncement([...packet.answers, ...(packet.additionals ?? [])]));
    mdns.on("query", (packet, rinfo) => this.answer(packet.questions, rinfo));
    mdns.on("warning", () => {}); // malformed packets from others are not our failure
    this.sweeper = setInterval(() => this.expire(), 250);
    this.sweeper.unref();
    this.ready = Promise.all([
      new Promise<void>((resolve, reject) => {
        mdns.once("ready", resolve);
        mdns.once("error", reject);
      }),
      this.startQuerier(iface),
    ]).then(() => undefined);
    return this.ready;
  }

  private async startQuerier(iface: string): Promise<void> {
    // Bound before it sends, so its multicast leaves by the chosen interface and no other.
    const socket = dgram.createSocket({ type: "udp4", reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, iface, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    socket.setMulticastInterface(iface);
    socket.setMulticastLoopback(true);
    socket.setMulticastTTL(255);
    const querier = makeMdns({ socket, port: MDNS_PORT, ip: MDNS_GROUP, bind: false, multicast: false });
    querier.on("response", (packet) => {
      const records = [...packet.answers, ...(packet.additionals ?? [])];
      for (const q of packet.questions ?? []) this.rounds.get(q.name)?.(records);
    });
    querier.on("warning", () => {});
    this.querier = querier;
  }

  /** Answers go-micro's way: to the asker, with the question, for the nodes registered here. */
  private answer(questions: Question[], rinfo: { address: string; port: number }): void {
    for (const q of questions) {
      if (q.type !== "PTR" && (q.type as string) !== "ANY") continue;
      const locals = [...this.local.values()];
      let answers: Answer[] = [];
      if (q.name === SERVICES) {
        for (const name of new Set(locals.map((l) => l.service.name))) answers.push(...enumRecords(name, DEFAULT_TTL_SECONDS));
        // tsmicro peers warming up learn the nodes themselves from an announcement.
        if (locals.length > 0) this.announce();
      } else {
        for (const { service, ttl } of locals) if (`${service.name}.${DOMAIN}` === q.name) answers.push(...nodeRecords(service, ttl));
      }
      if (answers.length > 0) this.mdns?.respond({ questions: [q], answers }, { address: rinfo.address, port: rinfo.port });
    }
  }

  private announce(): void {
    for (const { service, ttl } of this.local.values()) this.mdns?.respond({ answers: nodeRecords(service, ttl) });
  }

  private onAnnouncement(records: Answer[]): void {
    for (const { instance, service, ttl } of parseResponse(records).nodes) {
      if (ttl === 0) this.forget(instance);
      else this.remember(instance, service, ttl);
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
    const due: Array<[string, Heard]> = [];
    for (const entry of this.heard) if (entry[1].expiresAt <= now) due.push(entry);
    if (due.length === 0) return;
    // A busy process runs this late, and before the announcements that arrived meanwhile: read them first.
    void pendingAnnouncementsRead().then(() => {
      for (const [instance, h] of due) if (this.heard.get(instance) === h) this.forget(instance);
    });
  }

  /** Asks one question and gathers the answers that arrive within listenMs. */
  private async ask(name: string): Promise<Answer[]> {
    await this.start();
    const records: Answer[] = [];
    const previous = this.rounds.get(name);
    this.rounds.set(name, (r) => {
      previous?.(r);
      records.push(...r);
    });
    this.querier!.query({ questions: [{ name, type: "PTR" }] });
    await new Promise((resolve) => setTimeout(resolve, this.listenMs));
    await pendingAnnouncementsRead();
    if (previous) this.rounds.set(name, previous);
    else this.rounds.delete(name);
    return records;
  }

  async register(service: Service, opts: RegisterOptions = {}): Promise<void> {
    await this.start();
    const ttl = opts.ttl && opts.ttl > 0 ? Math.ceil(opts.ttl) : DEFAULT_TTL_SECONDS;
    for (const node of service.nodes) {
      const single: Service = { ...cloneService(service), nodes: [structuredClone(node)] };
      const instance = instanceName(service.name, node.id);
      this.local.set(instance, { service: single, ttl });
      this.remember(instance, single, ttl);
      this.mdns!.respond({ answers: nodeRecords(single, ttl) });
    }
  }

  async deregister(service: Service): Promise<void> {
    await this.start();
    for (const node of service.nodes) {
      const instance = instanceName(service.name, node.id);
      const entry = this.local.get(instance);
      this.local.delete(instance);
      this.forget(instance);
      if (entry) await new Promise<void>((resolve) => this.mdns!.respond({ answers: nodeRecords(entry.service, 0) }, () => resolve()));
    }
  }

  /** The first watch asks every node for its services; tsmicro nodes announce theirs. */
  private warm(): Promise<void> {
    this.warmed ??= this.ask(SERVICES).then(() => undefined);
    return this.warmed;
  }

  private liveServices(): Service[] {
    this.expire();
    return [...this.heard.values()].map((h) => h.service);
  }

  /** Asks who serves name, as go-micro does: the nodes that answer are the service's nodes. */
  async getService(name: string): Promise<Service[]> {
    const answers = parseResponse(await this.ask(`${name}.${DOMAIN}`)).nodes.filter((n) => n.service.name === name && n.ttl > 0);
    const answered = new Set(answers.map((a) => a.instance));
    for (const a of answers) this.remember(a.instance, a.service, a.ttl);
    // A node that did not answer is gone, even if its records have not expired (it died silently).
    for (const [instance, h] of this.heard) if (h.service.name === name && !answered.has(instance) && !this.local.has(instance)) this.forget(instance);
    const found = mergeByVersion(this.liveServices().filter((s) => s.name === name));
    if (found.length === 0) throw new ServiceNotFoundError(name);
    return found;
  }

  /** Every node answers with its services' names (go-micro's nodes only so); tsmicro nodes also announce theirs. */
  async listServices(): Promise<Service[]> {
    const names = parseResponse(await this.ask(SERVICES)).names;
    const services = mergeByVersion(this.liveServices().filter((s) => names.includes(s.name) || this.localNames().has(s.name))).map((s) => ({ ...s, nodes: [] }));
    for (const name of names) if (!services.some((s) => s.name === name)) services.push({ name, version: "", nodes: [] });
    return services;
  }

  private localNames(): Set<string> {
    return new Set([...this.local.values()].map((l) => l.service.name));
  }

  watch(opts?: WatchOptions): Watcher {
    void this.warm();
    return this.watchers.add(opts);
  }

  async close(): Promise<void> {
    if (!this.mdns) return;
    const mdns = this.mdns;
    // Goodbyes for nodes nobody deregistered, sent before the socket goes.
    await Promise.all([...this.local.values()].map(({ service }) => new Promise<void>((resolve) => mdns.respond({ answers: nodeRecords(service, 0) }, () => resolve()))));
    this.local.clear();
    clearInterval(this.sweeper);
    this.watchers.stopAll();
    this.mdns = undefined;
    this.ready = undefined;
    this.warmed = undefined;
    const querier = this.querier;
    this.querier = undefined;
    await Promise.all([new Promise<void>((resolve) => mdns.destroy(() => resolve())), querier && new Promise<void>((resolve) => querier.destroy(() => resolve()))]);
  }

  override toString(): string {
    return "mdns";
  }
}
