/**
 * The default broker, go-micro's http broker on the wire, so Go and tsmicro nodes publish to each
 * other: every subscription is a node of the registry service "micro.http.broker" (version = its
 * queue group, or the broadcast marker; id "<topic>-<subscription id>"; metadata {secure, broker:
 * "http", topic}); a publisher looks the topic's nodes up and POSTs `/?id=<node id>` with the JSON
 * of go-micro's broker.Message, {"Header":{…,"Micro-Topic":topic},"Body":"<base64>"}, to each
 * broadcast subscriber and to one member of each queue group. Failed deliveries are retried
 * (another member for queue groups) a bounded number of times and then reported by publish(),
 * which resolves only once every subscriber it delivers to has run its handler and answered.
 * Handlers get the header as published: the Micro-Topic this broker adds for routing is removed.
 *
 * Between tsmicro nodes the same subscriptions are reached faster: a subscriber node advertising
 * FRAME_CAPABILITY gets its deliveries batched over a tcp frame connection (frame-delivery.ts),
 * on the same port, which tells frames from HTTP by their first byte. Publishers read the
 * subscriber nodes from a watch-driven cache of the registry (as go-micro's http broker does), not
 * the registry per publish; a subscription that is gone by the time its delivery arrives counts
 * as not delivered, not as a failure. A handler's failure is reported to the publisher and the
 * delivery tried again (another member for queue groups), as are deliveries whose connection
 * failed; a delivery that timed out is not sent again, since its handler may still be running.
 */
import type { Agent, IncomingMessage, Server, ServerResponse } from "node:http";
import type https from "node:https";
import net from "node:net";
import { http } from "../builtins.ts";
import { randomUUID } from "node:crypto";
import { MicroError, badRequest, internalServerError, methodNotAllowed, notFound, requestEntityTooLarge } from "../errors.ts";
import { DEFAULT_MAX_MESSAGE_SIZE, SECURE_METADATA, type ServeOptions, type TransportRequest } from "../transport/transport.ts";
import { isNotFound, type Node, type Registry, type Service } from "../registry/registry.ts";
import { CacheRegistry, type Snapshot } from "../registry/cache.ts";
import { tcpTransport } from "../transport/tcp.ts";
import { httpTransport } from "../transport/http.ts";
import { httpsModule } from "../transport/secure.ts";
import { onePortServer } from "../transport/one-port.ts";
import { FRAME_CAPABILITY, FrameDeliveries, Status, receiveBatch, type Delivery, type Outcome } from "./frame-delivery.ts";
import { joinHostPort, parseHostPort } from "../address.ts";
import { answerClientErrors, answerOnSocket, trickleProofTimeouts } from "../transport/http-guard.ts";
import { checkMessage, checkQueue, checkTopic, decodeEnvelope, encodeEnvelope } from "./shared.ts";
import { singleFlight } from "../single-flight.ts";
import { noAck, type Broker, type BrokerOptions, type Handler, type Message, type SubscribeOptions, type Subscriber } from "./broker.ts";

export const HTTP_BROKER_SERVICE = "micro.http.broker";
/** The id go-micro gives errors of its http broker. */
const ERROR_ID = "go.micro.broker";
const BROADCAST_VERSION = "ff.http.broadcast";
const HEADER_TOPIC = "Micro-Topic";
const MAX_ATTEMPTS = 3;

/** The subscription a delivery is for (go-micro posts to /?id=<subscriber node id>); undefined for a URL that does not parse. */
function subscriptionId(url: string | undefined): string | undefined {
  try {
    return new URL(url ?? "/", "http://broker").searchParams.get("id") ?? "";
  } catch {
    return undefined; // e.g. "//[": new URL throws on what an attacker sends
  }
}

/** Answers a delivery with a go-micro error, its code as the HTTP status. */
function fail(res: ServerResponse, err: MicroError): void {
  res.writeHead(err.code, { "Content-Type": "application/json" }).end(JSON.stringify(err));
}

/** Where one publish to a topic goes: the one node of a broadcast subscription, or the members of a queue group (one of them gets it). */
type Route = Node[];

const framesCapable = (node: Node) => node.metadata?.[FRAME_CAPABILITY.key] === FRAME_CAPABILITY.value;

/** The routes of each topic in the broker service's nodes. */
function routesOf(services: readonly Service[]): Map<string, Route[]> {
  const byTopic = new Map<string, Route[]>();
  for (const s of services) {
    const groups = new Map<string, Node[]>();
    for (const n of s.nodes) {
      const topic = n.metadata?.broker === "http" ? n.metadata.topic : undefined;
      if (topic === undefined) continue;
      groups.set(topic, [...(groups.get(topic) ?? []), n]);
    }
    for (const [topic, nodes] of groups) {
      const routes = byTopic.get(topic) ?? [];
      if (s.version === BROADCAST_VERSION) for (const n of nodes) routes.push([n]);
      else routes.push(nodes);
      byTopic.set(topic, routes);
    }
  }
  return byTopic;
}

interface HttpSubscription extends Subscriber {
  readonly id: string;
  readonly handler: Handler;
  readonly service: Service;
}

/** How long a topic a slow lookup found without subscribers is not looked up again; a subscriber that comes meanwhile is heard through the cache's watch. */
const NO_SUBSCRIBER_RECHECK_MS = 1000;
/** A lookup this slow is not repeated for every publish (mdns's take its 150 ms listen window; memory, etcd and Consul ones a millisecond or so). */
const SLOW_LOOKUP_MS = 50;
/** Topic names can be made per request: the topics remembered as unsubscribed are bounded. */
const MAX_UNSUBSCRIBED_TOPICS = 1024;
const NOTHING_TO_DELIVER = Promise.resolve();

export default class HttpBroker implements Broker {
  private opts: BrokerOptions;
  private server?: net.Server;
  private httpServer?: Server;
  private readonly sockets = new Set<net.Socket>();
  private boundAddress = "";
  private _cache?: CacheRegistry;
  /** The routes of the last snapshot of the cache, rebuilt when a watch event changes it. */
  private routes?: { snapshot: Snapshot; byTopic: Map<string, Route[]> };
  private _frames?: FrameDeliveries;
  /** Frame deliveries to subscribers that advertise secure=true (TLS). */
  private _secureFrames?: FrameDeliveries;
  private readonly subscriptions = new Map<string, HttpSubscription>();
  /** Registry lookups under way, by topic. */
  private readonly lookups = new Map<string, Promise<Route[]>>();
  /** Topics the last lookup found no subscriber for, and when (performance.now()). */
  private readonly unsubscribed = new Map<string, number>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  /** For subscribers that advertise secure=true; made on first use. */
  private secureAgent?: https.Agent;
  private renewTimer?: NodeJS.Timeout;

  constructor(opts: BrokerOptions = {}) {
    this.opts = opts;
  }

  init(opts: BrokerOptions): void {
    if (opts.registry && opts.registry !== this.opts.registry) this.dropCache();
    this.opts = { ...this.opts, ...opts };
  }

  options(): BrokerOptions {
    return this.opts;
  }

  address(): string {
    return this.boundAddress;
  }

  /** Where publishers read subscriber nodes: the registry's cache (the registry itself when it is one). */
  private cache(): CacheRegistry {
    const registry = this.registry();
    return (this._cache ??= registry instanceof CacheRegistry ? registry : new CacheRegistry(registry));
  }

  /** Stops the cache this broker made (one it was given belongs to its owner). */
  private dropCache(): void {
    if (this._cache !== this.opts.registry) this._cache?.stop();
    this._cache = this.routes = undefined;
  }

  private frames(secure: boolean): FrameDeliveries {
    const credentials = () => ({ ...this.opts.auth?.credentials() });
    if (secure) return (this._secureFrames ??= new FrameDeliveries(HTTP_BROKER_SERVICE, credentials, { tls: this.opts.clientTLS ?? {} }));
    return (this._frames ??= new FrameDeliveries(HTTP_BROKER_SERVICE, credentials));
  }

  private registry(): Registry {
    if (!this.opts.registry) throw new Error("http broker: no registry (pass {registry} to init)");
    return this.opts.registry;
  }

  async connect(): Promise<void> {
    if (this.server) return;
    const { host, port } = parseHostPort(this.opts.addresses?.[0] ?? "127.0.0.1:0");
    const readTimeoutMs = this.opts.readTimeoutMs ?? 30_000;
    const headerTimeoutMs = this.opts.headerTimeoutMs ?? 10_000;
    const httpServer = http.createServer(trickleProofTimeouts(headerTimeoutMs, readTimeoutMs), (req, res) => this.receive(req, res));
    answerClientErrors(httpServer, HTTP_BROKER_SERVICE);
    // Sockets are handed over, never listen()ed: announce it, or Node never checks the header timeout.
    httpServer.emit("listening");
    this.httpServer = httpServer;
    const limit = this.opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const frameOptions: ServeOptions = {
      // A batch holds several messages; each of them is held to the limit on its own.
      maxMessageSize: limit + 1024 * 1024,
      readTimeoutMs,
      headerTimeoutMs,
      serverId: ERROR_ID,
      track: <T>(work: Promise<T>) => work,
      draining: () => false,
      health: () => ({ status: "ok" }),
    };
    const dispatchBatch = (req: TransportRequest) =>
      Promise.resolve(this.opts.auth?.verify(req.headers, ERROR_ID) ?? receiveBatch(req, limit, ERROR_ID, this.deliverFrame));
    const frames = tcpTransport.listen(dispatchBatch, frameOptions);
    // Frames from tsmicro publishers, go-micro's HTTP from the others; over TLS first when it has a certificate.
    const server = onePortServer({
      protocols: [
        { detect: tcpTransport.detect, serve: frames.serve, refuse: frames.refuse },
        {
          detect: httpTransport.detect,
          serve(socket, head) {
            socket.unshift(head);
            httpServer.emit("connection", socket);
          },
          refuse: (socket, _head, err) => answerOnSocket(socket, err),
        },
      ],
      readTimeoutMs,
      serverId: ERROR_ID,
      tls: this.opts.tls,
      sockets: this.sockets,
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const bound = server.address() as net.AddressInfo;
    this.boundAddress = joinHostPort(bound.address, bound.port);
    const interval = this.opts.registerInterval ?? 30;
    if (interval > 0) {
      // Subscriptions are registry entries with a TTL: keep them alive like a service node.
      this.renewTimer = setInterval(() => void this.renew(), interval * 1000);
      this.renewTimer.unref();
    }
  }

  async disconnect(): Promise<void> {
    clearInterval(this.renewTimer);
    for (const sub of [...this.subscriptions.values()]) await sub.unsubscribe();
    const server = this.server;
    this.server = undefined;
    if (server) {
      for (const socket of this.sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.httpServer?.close(); // stops its timeout checks
    this.dropCache();
    await Promise.all([this._frames?.close(), this._secureFrames?.close()]);
    this._frames = this._secureFrames = undefined;
    this.agent.destroy();
    this.secureAgent?.destroy();
  }

  /** Runs one delivery of a frame batch; never rejects (frame-delivery.ts's contract). */
  private readonly deliverFrame = ({ subscriptionId, message }: Delivery): Outcome | Promise<Outcome> => {
    const sub = this.subscriptions.get(subscriptionId);
    if (!sub) return Status.Gone;
    try {
      const done = sub.handler({ topic: sub.topic, message, ack: noAck });
      if (!done) return Status.Delivered;
      return done.then(
        () => Status.Delivered,
        (err: unknown) => MicroError.from(err, ERROR_ID),
      );
    } catch (err) {
      return MicroError.from(err, ERROR_ID);
    }
  };

  private async renew(): Promise<void> {
    for (const sub of this.subscriptions.values()) {
      await this.registry()
        .register(sub.service, { ttl: this.opts.registerTTL })
        .catch(() => {});
    }
  }

  private receive(req: IncomingMessage, res: ServerResponse): void {
    // Refused before a byte of the body is read: the response closes the connection, so an unread body costs nothing.
    const refuse = (err: MicroError) => {
      res.setHeader("Connection", "close");
      fail(res, err);
    };
    const id = subscriptionId(req.url);
    if (id === undefined) return refuse(badRequest(ERROR_ID, "malformed request URL"));
    const sub = this.subscriptions.get(id);
    if (!sub) return refuse(notFound(ERROR_ID, `no subscription ${id}`));
    if (req.method !== "POST") return refuse(methodNotAllowed(ERROR_ID, "Method not allowed"));
    const denied = this.opts.auth?.verify({ Authorization: req.headers.authorization ?? "" }, ERROR_ID);
    if (denied) return refuse(denied);
    const limit = this.opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const tooLarge = (size: string) => requestEntityTooLarge(ERROR_ID, `message body of ${size} bytes exceeds the ${limit} byte limit`);
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > limit) return refuse(tooLarge(String(declared)));
    const chunks: Buffer[] = [];
    let size = 0;
    const collect = (c: Buffer) => {
      size += c.length;
      if (size <= limit) return void chunks.push(c);
      // A chunked body past the limit: stop buffering and answer now. The rest is read and dropped (bounded by
      // the request timeout) rather than cut off, since closing on unread bytes resets the connection and loses the answer.
      req.off("data", collect);
      req.resume();
      chunks.length = 0;
      fail(res, tooLarge(`more than ${limit}`));
    };
    req.on("data", collect);
    req.on("end", async () => {
      if (size > limit) return;
      const { message, error } = decodeEnvelope(Buffer.concat(chunks));
      if (error) {
        fail(res, badRequest(ERROR_ID, "Error parsing request body: not a broker message"));
        return;
      }
      const { [HEADER_TOPIC]: topic, ...header } = message.header;
      if (sub.topic !== topic) {
        fail(res, notFound(ERROR_ID, `no subscription ${id} to ${topic}`));
        return;
      }
      try {
        await sub.handler({ topic: sub.topic, message: { header, body: message.body }, ack: noAck });
        res.writeHead(200).end();
      } catch (err) {
        fail(res, MicroError.from(err, ERROR_ID));
      }
    });
  }

  private post(node: Node, body: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const { host, port } = parseHostPort(node.address);
      // go-micro's http broker marks TLS subscribers with secure=true, and so does this one.
      const secure = node.metadata?.[SECURE_METADATA] === "true";
      if (secure) this.secureAgent ??= new (httpsModule().Agent)({ keepAlive: true, maxSockets: 64, ...this.opts.clientTLS });
      const req = (secure ? httpsModule() : http).request(
        {
          agent: secure ? this.secureAgent : this.agent,
          host,
          port,
          method: "POST",
          path: `/?id=${encodeURIComponent(node.id)}`,
          headers: { ...this.opts.auth?.credentials(), "Content-Type": "application/json", "Content-Length": body.length },
          timeout: 10_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            res.statusCode === 200 ? resolve() : reject(new Error(`${node.address} answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`)),
          );
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${node.address} did not answer in time`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  /** One attempt at one node: over frames where the node takes them, else go-micro's HTTP POST. */
  private attempt(node: Node, topic: string, message: Message): Promise<Outcome> {
    if (framesCapable(node)) return this.frames(node.metadata?.[SECURE_METADATA] === "true").send(node.address, node.id, message);
    const envelope = encodeEnvelope({ header: { ...message.header, [HEADER_TOPIC]: topic }, body: message.body });
    return this.post(node, envelope).then(
      () => Status.Delivered,
      (err: unknown) => MicroError.from(err, ERROR_ID),
    );
  }

  /** Delivers to one of candidates: undefined once delivered (or the subscription is gone), else the last error. */
  private deliver(candidates: Node[], topic: string, message: Message): Promise<Error | undefined> {
    const first = candidates.length === 1 ? 0 : Math.floor(Math.random() * candidates.length);
    return this.attempt(candidates[first]!, topic, message).then((outcome) =>
      outcome === Status.Delivered ? undefined : this.deliverAgain(candidates, first, outcome, topic, message),
    );
  }

  /** After an attempt at candidates[i] that did not deliver: moves on to the next member, a bounded number of times. */
  private async deliverAgain(candidates: Node[], i: number, outcome: Exclude<Outcome, Status.Delivered>, topic: string, message: Message): Promise<Error | undefined> {
    const left = [...candidates];
    let lastError: MicroError | undefined;
    for (let attempts = 1; ; ) {
      if (outcome === Status.Gone) left.splice(i, 1); // not a failure; another member of the group may take it
      else {
        lastError = outcome;
        // A timed-out delivery is not sent again: its handler may still be running (at most once).
        if (outcome.code === 408 || attempts === MAX_ATTEMPTS) return lastError;
        await new Promise((r) => setTimeout(r, 50 * 2 ** (attempts - 1)));
        attempts++;
        i++;
      }
      if (left.length === 0) return lastError;
      i %= left.length;
      const next = await this.attempt(left[i]!, topic, message);
      if (next === Status.Delivered) return undefined;
      outcome = next;
    }
  }

  /** A topic's routes from the cache; undefined when the cache has none (then the registry is asked). */
  private routesFromCache(topic: string): Route[] | undefined {
    const snapshot = this.cache().cached(HTTP_BROKER_SERVICE);
    if (!snapshot) return undefined;
    if (this.routes?.snapshot !== snapshot) this.routes = { snapshot, byTopic: routesOf(snapshot.services) };
    return this.routes.byTopic.get(topic);
  }

  /**
   * A topic's routes when the cache has none: the service is fetched into the cache, or, when the
   * cache holds it without this topic, looked up afresh (the topic may have just got its first
   * subscriber, and a new node reaches the cache only with the watch's event). Publishes at once
   * share one lookup. When the lookup was slow (mdns waits 150 ms for answers), a topic it found
   * without subscribers is taken at the cache's word for NO_SUBSCRIBER_RECHECK_MS, or a publisher
   * to a topic nobody listens to would wait that long on every publish; a fast registry is asked
   * every time, so a subscribe() that has returned is seen by the next publish at once.
   */
  private lookUpRoutes(topic: string): Promise<Route[]> {
    return singleFlight(this.lookups, topic, () => this.askRegistry(topic));
  }

  private async askRegistry(topic: string): Promise<Route[]> {
    const started = performance.now();
    let routes: Route[];
    try {
      const cache = this.cache();
      const services = cache.cached(HTTP_BROKER_SERVICE) ? await this.registry().getService(HTTP_BROKER_SERVICE) : (await cache.snapshot(HTTP_BROKER_SERVICE)).services;
      routes = routesOf(services).get(topic) ?? [];
    } catch (err) {
      if (!isNotFound(err)) throw err;
      routes = []; // no subscriber anywhere: not a failure
    }
    if (routes.length > 0 || performance.now() - started < SLOW_LOOKUP_MS) this.unsubscribed.delete(topic);
    else {
      if (this.unsubscribed.size >= MAX_UNSUBSCRIBED_TOPICS) this.unsubscribed.clear();
      this.unsubscribed.set(topic, performance.now());
    }
    return routes;
  }

  /** Not an async function: a publish whose routes are cached allocates no promise of its own before delivering. */
  publish(topic: string, message: Message): Promise<void> {
    let routes: Route[] | undefined;
    try {
      checkTopic("http", topic);
      checkMessage("http", message);
      routes = this.routesFromCache(topic);
    } catch (err) {
      return Promise.reject(err);
    }
    if (routes) return this.publishTo(topic, message, routes);
    const lookedUpAt = this.unsubscribed.get(topic);
    if (lookedUpAt !== undefined && performance.now() - lookedUpAt < NO_SUBSCRIBER_RECHECK_MS) return NOTHING_TO_DELIVER;
    return this.lookUpRoutes(topic).then((found) => this.publishTo(topic, message, found));
  }

  private async publishTo(topic: string, message: Message, routes: Route[]): Promise<void> {
    if (routes.length === 1) {
      // The common case: one subscriber or one group, no array of one promise.
      const failure = await this.deliver(routes[0]!, topic, message);
      if (failure) throw this.publishFailed(topic, [failure], 1);
      return;
    }
    const failures = (await Promise.all(routes.map((r) => this.deliver(r, topic, message)))).filter((e): e is Error => e !== undefined);
    if (failures.length > 0) throw this.publishFailed(topic, failures, routes.length);
  }

  private publishFailed(topic: string, failures: Error[], deliveries: number): MicroError {
    const detail = failures[0] instanceof MicroError ? failures[0].detail : failures[0]!.message;
    return internalServerError(ERROR_ID, `publish to ${topic}: ${failures.length} of ${deliveries} deliveries failed: ${detail}`);
  }

  async subscribe(topic: string, handler: Handler, opts: SubscribeOptions = {}): Promise<Subscriber> {
    if (!this.server) throw new Error("http broker: not connected");
    checkTopic("http", topic);
    checkQueue("http", opts.queue);
    // go-micro's node id is "<topic>-go.micro.http.broker-<broker uuid>"; one per subscription here.
    const id = `${topic}-go.micro.http.broker-${randomUUID()}`;
    const service: Service = {
      name: HTTP_BROKER_SERVICE,
      version: opts.queue ?? BROADCAST_VERSION,
      nodes: [
        {
          id,
          address: this.boundAddress,
          metadata: { [SECURE_METADATA]: String(this.opts.tls !== undefined), broker: "http", topic, [FRAME_CAPABILITY.key]: FRAME_CAPABILITY.value },
        },
      ],
    };
    const sub: HttpSubscription = {
      id,
      topic,
      options: opts,
      handler,
      service,
      unsubscribe: async () => {
        if (!this.subscriptions.delete(id)) return;
        await this.registry().deregister(service);
      },
    };
    this.subscriptions.set(id, sub);
    await this.registry().register(service, { ttl: this.opts.registerTTL });
    return sub;
  }

  toString(): string {
    return "http";
  }
}
