/**
 * The default broker, go-micro's http broker on the wire, so Go and tsmicro nodes publish to each
 * other: every subscription is a node of the registry service "micro.http.broker" (version = its
 * queue group, or the broadcast marker; id "<topic>-<subscription id>"; metadata {secure, broker:
 * "http", topic}); a publisher looks the topic's nodes up and POSTs `/?id=<node id>` with the JSON
 * of go-micro's broker.Message, {"Header":{…,"Micro-Topic":topic},"Body":"<base64>"}, to each
 * broadcast subscriber and to one member of each queue group. Failed deliveries are retried
 * (another member for queue groups) a bounded number of times and then reported by publish().
 * Handlers get the header as published: the Micro-Topic this broker adds for routing is removed.
 */
import http from "node:http";
import https from "node:https";
import { randomUUID } from "node:crypto";
import { MicroError, badRequest, internalServerError, methodNotAllowed, notFound, requestEntityTooLarge } from "../errors.ts";
import { DEFAULT_MAX_MESSAGE_SIZE, SECURE_METADATA } from "../transport/transport.ts";
import { isNotFound, type Node, type Registry, type Service } from "../registry/registry.ts";
import { joinHostPort, parseHostPort } from "../address.ts";
import { answerClientErrors, trickleProofTimeouts } from "../transport/http-guard.ts";
import { checkMessage, checkQueue, checkTopic, decodeEnvelope, encodeEnvelope } from "./shared.ts";
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
  /** For subscribers that advertise secure=true; made on first use. */
  private secureAgent?: https.Agent;
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
    const timeouts = trickleProofTimeouts(this.opts.headerTimeoutMs ?? 10_000, this.opts.readTimeoutMs ?? 30_000);
    const receive = (req: http.IncomingMessage, res: http.ServerResponse) => this.receive(req, res);
    const t = this.opts.tls;
    const server: http.Server = t
      ? https.createServer({ ...timeouts, cert: t.cert, key: t.key, ca: t.clientCA, requestCert: t.clientCA !== undefined, rejectUnauthorized: t.clientCA !== undefined }, receive)
      : http.createServer(timeouts, receive);
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
    this.secureAgent?.destroy();
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
      if (secure) this.secureAgent ??= new https.Agent({ keepAlive: true, maxSockets: 64, ...this.opts.clientTLS });
      const req = (secure ? https : http).request(
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

  /** Delivers to one of candidates, moving to another after a failure; returns the last error. */
  private async deliver(candidates: Node[], body: Buffer): Promise<Error | undefined> {
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const node = candidates[(Math.floor(Math.random() * candidates.length) + attempt) % candidates.length]!;
      try {
        await this.post(node, body);
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
    const body = encodeEnvelope({ header: { ...message.header, [HEADER_TOPIC]: topic }, body: message.body });
    const deliveries: Promise<Error | undefined>[] = [];
    for (const s of services) {
      const nodes = s.nodes.filter((n) => n.metadata?.broker === "http" && n.metadata.topic === topic);
      if (nodes.length === 0) continue;
      if (s.version === BROADCAST_VERSION) for (const n of nodes) deliveries.push(this.deliver([n], body));
      else deliveries.push(this.deliver(nodes, body));
    }
    const failures = (await Promise.all(deliveries)).filter((e): e is Error => e !== undefined);
    if (failures.length > 0) {
      throw internalServerError(
        ERROR_ID,
        `publish to ${topic}: ${failures.length} of ${deliveries.length} deliveries failed after ${MAX_ATTEMPTS} attempts: ${failures[0]!.message}`,
      );
    }
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
      nodes: [{ id, address: this.boundAddress, metadata: { [SECURE_METADATA]: String(this.opts.tls !== undefined), broker: "http", topic } }],
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
