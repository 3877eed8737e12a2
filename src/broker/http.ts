/**
 * The default broker, as go-micro's: every subscription is a node of the registry service
 * "go.micro.http.broker" (version = its queue group, or the broadcast marker) with the topic in
 * its metadata; a publisher looks the topic's nodes up and POSTs the message to each broadcast
 * subscriber and to one member of each queue group. Failed deliveries are retried (another member
 * for queue groups) a bounded number of times and then reported by publish().
 */
import http from "node:http";
import { randomUUID } from "node:crypto";
import { MicroError, badRequest, internalServerError, methodNotAllowed, notFound, requestEntityTooLarge } from "../errors.ts";
import { DEFAULT_MAX_MESSAGE_SIZE } from "../transport/transport.ts";
import { isNotFound, type Node, type Registry, type Service } from "../registry/registry.ts";
import { joinHostPort, parseHostPort } from "../address.ts";
import { answerClientErrors, decodePath, trickleProofTimeouts } from "../transport/http-guard.ts";
import { checkMessage, checkQueue, checkTopic } from "./shared.ts";
import { noAck, type Broker, type BrokerOptions, type Handler, type Message, type SubscribeOptions, type Subscriber } from "./broker.ts";

export const HTTP_BROKER_SERVICE = "go.micro.http.broker";
const BROADCAST_VERSION = "ff.http.broadcast";
const HEADER_TOPIC = "Micro-Topic";
const HEADER_MESSAGE = "Micro-Broker-Header";
const MAX_ATTEMPTS = 3;

/** Answers a delivery with a go-micro error, its code as the HTTP status. */
function fail(res: http.ServerResponse, err: MicroError): void {
  res.writeHead(err.code, { "Content-Type": "application/json" }).end(JSON.stringify(err));
}

interface HttpSubscription extends Subscriber {
  readonly id: string;
  readonly handler: Handler;
  readonly service: Service;
}

export default class HttpBroker implements Broker {
  private opts: BrokerOptions;
  private server?: http.Server;
  private boundAddress = "";
  private readonly subscriptions = new Map<string, HttpSubscription>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private renewTimer?: NodeJS.Timeout;

  constructor(opts: BrokerOptions = {}) {
    this.opts = opts;
  }

  init(opts: BrokerOptions): void {
    this.opts = { ...this.opts, ...opts };
  }

  options(): BrokerOptions {
    return this.opts;
  }

  address(): string {
    return this.boundAddress;
  }

  private registry(): Registry {
    if (!this.opts.registry) throw new Error("http broker: no registry (pass {registry} to init)");
    return this.opts.registry;
  }

  async connect(): Promise<void> {
    if (this.server) return;
    const { host, port } = parseHostPort(this.opts.addresses?.[0] ?? "127.0.0.1:0");
    const server = http.createServer(
      trickleProofTimeouts(this.opts.headerTimeoutMs ?? 10_000, this.opts.readTimeoutMs ?? 30_000),
      (req, res) => this.receive(req, res),
    );
    answerClientErrors(server, HTTP_BROKER_SERVICE);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const bound = server.address() as import("node:net").AddressInfo;
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
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.agent.destroy();
  }

  private async renew(): Promise<void> {
    for (const sub of this.subscriptions.values()) {
      await this.registry()
        .register(sub.service, { ttl: this.opts.registerTTL })
        .catch(() => {});
    }
  }

  private receive(req: http.IncomingMessage, res: http.ServerResponse): void {
    // Refused before a byte of the body is read: the response closes the connection, so an unread body costs nothing.
    const refuse = (err: MicroError) => {
      res.setHeader("Connection", "close");
      fail(res, err);
    };
    const path = decodePath(req.url);
    if (path === undefined) return refuse(badRequest(HTTP_BROKER_SERVICE, "malformed percent-escape in the request path"));
    const sub = this.subscriptions.get(path);
    if (!sub) return refuse(notFound(HTTP_BROKER_SERVICE, "no such subscription"));
    if (req.method !== "POST") return refuse(methodNotAllowed(HTTP_BROKER_SERVICE, `method ${req.method} not allowed: POST a message`));
    const limit = this.opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const tooLarge = (size: string) => requestEntityTooLarge(HTTP_BROKER_SERVICE, `message body of ${size} bytes exceeds the ${limit} byte limit`);
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
      let header: Record<string, string>;
      try {
        header = JSON.parse(decodeURIComponent(String(req.headers[HEADER_MESSAGE.toLowerCase()] ?? "%7B%7D"))) as Record<string, string>;
        if (typeof header !== "object" || header === null || Array.isArray(header)) throw new TypeError("not an object");
      } catch {
        fail(res, badRequest(HTTP_BROKER_SERVICE, "malformed message header"));
        return;
      }
      try {
        await sub.handler({ topic: sub.topic, message: { header, body: Buffer.concat(chunks) }, ack: noAck });
        res.writeHead(200).end();
      } catch (err) {
        fail(res, MicroError.from(err, HTTP_BROKER_SERVICE));
      }
    });
  }

  private post(node: Node, topic: string, message: Message): Promise<void> {
    return new Promise((resolve, reject) => {
      const { host, port } = parseHostPort(node.address);
      const req = http.request(
        {
          agent: this.agent,
          host,
          port,
          method: "POST",
          path: `/${encodeURIComponent(node.metadata?.subscription ?? "")}`,
          headers: {
            [HEADER_TOPIC]: encodeURIComponent(topic),
            [HEADER_MESSAGE]: encodeURIComponent(JSON.stringify(message.header)),
            "Content-Type": "application/octet-stream",
            "Content-Length": message.body.length,
          },
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
      req.end(message.body);
    });
  }

  /** Delivers to one of candidates, moving to another after a failure; returns the last error. */
  private async deliver(candidates: Node[], topic: string, message: Message): Promise<Error | undefined> {
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const node = candidates[(Math.floor(Math.random() * candidates.length) + attempt) % candidates.length]!;
      try {
        await this.post(node, topic, message);
        return undefined;
      } catch (err) {
        lastError = err as Error;
        if (attempt + 1 < MAX_ATTEMPTS) await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      }
    }
    return lastError;
  }

  async publish(topic: string, message: Message): Promise<void> {
    checkTopic("http", topic);
    checkMessage("http", message);
    let services: Service[];
    try {
      services = await this.registry().getService(HTTP_BROKER_SERVICE);
    } catch (err) {
      if (isNotFound(err)) return; // no subscriber anywhere: not a failure
      throw err;
    }
    const deliveries: Promise<Error | undefined>[] = [];
    for (const s of services) {
      const nodes = s.nodes.filter((n) => n.metadata?.topic === topic);
      if (nodes.length === 0) continue;
      if (s.version === BROADCAST_VERSION) for (const n of nodes) deliveries.push(this.deliver([n], topic, message));
      else deliveries.push(this.deliver(nodes, topic, message));
    }
    const failures = (await Promise.all(deliveries)).filter((e): e is Error => e !== undefined);
    if (failures.length > 0) {
      throw internalServerError(
        HTTP_BROKER_SERVICE,
        `publish to ${topic}: ${failures.length} of ${deliveries.length} deliveries failed after ${MAX_ATTEMPTS} attempts: ${failures[0]!.message}`,
      );
    }
  }

  async subscribe(topic: string, handler: Handler, opts: SubscribeOptions = {}): Promise<Subscriber> {
    if (!this.server) throw new Error("http broker: not connected");
    checkTopic("http", topic);
    checkQueue("http", opts.queue);
    const id = `${HTTP_BROKER_SERVICE}-${randomUUID()}`;
    const service: Service = {
      name: HTTP_BROKER_SERVICE,
      version: opts.queue ?? BROADCAST_VERSION,
      nodes: [{ id, address: this.boundAddress, metadata: { broker: "http", topic, subscription: id } }],
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
