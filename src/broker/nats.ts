/**
 * NATS broker: topics are subjects, queue groups are NATS queue groups. The payload is go-micro's
 * JSON broker.Message envelope (headers and base64 body), as go-micro's nats broker sends and
 * reads it, so Go and tsmicro nodes share subjects; a payload that is no envelope (a plain NATS
 * publisher) arrives as the body with the message's NATS headers. publish() resolves once the
 * server has the message (the client's buffer flushed): routed, never stored — at most once, so
 * what is in flight when the server restarts, or published while a subscriber reconnects, is lost.
 *
 * With `jetstream: true` delivery is at-least-once: publish() resolves once JetStream has stored
 * the message (a stream per topic, created on first use unless one already captures the subject;
 * it keeps messages for `jetstreamMaxAge`; headers are NATS headers there), and subscribers ack explicitly — a message whose handler throws, or that is never acked, is
 * delivered again. A queue group is a durable consumer shared by its members, so messages wait
 * while the whole group is away; a subscriber without a queue gets its own consumer, removed when
 * it unsubscribes. The client reconnects and resubscribes by itself after a server restart.
 */
import { createHash, randomUUID } from "node:crypto";
import type * as Nats from "@nats-io/transport-node";
import type * as JetStream from "@nats-io/jetstream";
import { importOptional } from "../cmd/optional-package.ts";
import type { Handler, Message } from "./broker.ts";
import { BrokerInputError, NOTHING_TO_SETTLE, NetworkBroker, decodeEnvelope, encodeEnvelope, type NetworkBrokerOptions, type NetworkSubscribeOptions, type StopListening } from "./shared.ts";

export interface NatsBrokerOptions extends NetworkBrokerOptions {
  /** At-least-once delivery through JetStream (the server must run with JetStream enabled). */
  jetstream?: boolean;
  /** How long a stream created by this broker keeps a message, consumed or not (default 24 h). */
  jetstreamMaxAge?: number;
}

const PULL_EXPIRES_MS = 5_000;
/**
 * Envelope bytes of core publishes held back at most before they go to the client: the client's
 * own threshold for writing its buffer at once (32 KiB), so a full outbox makes one socket write,
 * and a publish waits for at most that much of other publishes (~100 of the bench's events).
 */
const OUTBOX_BYTES = 32 * 1024;
const DEFAULT_MAX_AGE_MS = 24 * 60 * 60_000;
/** How long a subscriber's own JetStream consumer outlives a subscriber that vanished without unsubscribing. */
const ABANDONED_CONSUMER_MS = 60 * 60_000;

interface JetStreamSession {
  lib: typeof JetStream;
  client: JetStream.JetStreamClient;
  manager: JetStream.JetStreamManager;
  /** topic → name of the stream that captures it */
  streams: Map<string, Promise<string>>;
}

export default class NatsBroker extends NetworkBroker {
  protected declare opts: NatsBrokerOptions;
  private lib?: typeof Nats;
  private connection?: Nats.NatsConnection;
  private jetstream?: JetStreamSession;
  /** The flush the current turn's core publishes share (see flushed()). */
  private pendingFlush?: Promise<void>;
  /** Core publishes (subject, envelope, …) not yet handed to the client (see flushed()). */
  private outbox: Array<string | Buffer> = [];
  private outboxBytes = 0;
  /** Why handing the outbox to the client failed since the last flush. */
  private outboxFailure?: unknown;
  private readonly natsHeaders = new Map<string, Nats.MsgHdrs>();

  constructor(opts: NatsBrokerOptions = {}) {
    super("nats", "127.0.0.1:4222", opts);
  }

  protected async open(): Promise<void> {
    this.lib = await importOptional<typeof Nats>("@nats-io/transport-node", "nats");
    const lib = this.opts.jetstream ? await importOptional<typeof JetStream>("@nats-io/jetstream", "nats") : undefined;
    this.connection = await this.lib.connect({
      servers: this.serverUrls(["nats", "tls"]),
      name: "tsmicro",
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    if (lib)
      this.jetstream = {
        lib,
        client: lib.jetstream(this.connection),
        manager: await lib.jetstreamManager(this.connection),
        streams: new Map(),
      };
  }

  protected async close(): Promise<void> {
    // What was published before disconnect() goes out before the drain stops publishing.
    if (this.connection) this.handOver(this.connection);
    await this.connection?.drain();
    this.connection = undefined;
    this.jetstream = undefined;
  }

  protected override topicProblem(topic: string, use: "publish" | "subscribe"): string | undefined {
    const tokens = topic.split(".");
    if (tokens.includes("")) return "NATS subjects cannot have empty tokens (leading, trailing or double dots)";
    const wildcard = wildcardToken(tokens);
    if (wildcard === -1) return undefined;
    if (use === "publish") return "cannot publish to a wildcard subject";
    if (this.opts.jetstream) return "JetStream mode subscribes to literal subjects only";
    if (tokens.indexOf(">") !== -1 && tokens.indexOf(">") !== tokens.length - 1) return '">" must be the last token';
    return undefined;
  }

  protected send(topic: string, message: Message): Promise<void> {
    if (this.jetstream) return this.sendToStream(this.jetstream, topic, message, { headers: this.toNatsHeaders(message.header) });
    const connection = this.connection!;
    const envelope = encodeEnvelope(message);
    const limit = connection.info?.max_payload;
    if (limit !== undefined && envelope.length > limit) return Promise.reject(this.payloadTooLarge());
    this.outbox.push(topic, envelope);
    this.outboxBytes += envelope.length;
    const flushed = this.flushed(connection);
    if (this.outboxBytes >= OUTBOX_BYTES) this.handOver(connection);
    return flushed;
  }

  /** Hands the outbox to the client, which writes it to the socket at the end of the microtask. */
  private handOver(connection: Nats.NatsConnection): void {
    const outbox = this.outbox;
    this.outbox = [];
    this.outboxBytes = 0;
    try {
      for (let i = 0; i < outbox.length; i += 2) connection.publish(outbox[i] as string, outbox[i + 1] as Buffer);
    } catch (err) {
      this.outboxFailure ??= this.publishError(err); // the connection closed: the flush's publishes fail
    }
  }

  /** Draining the connection fails the JetStream acks still awaited; core publishes leave with the outbox (close()). */
  protected override closeFailsUnfinishedPublishes(): boolean {
    return this.jetstream !== undefined;
  }

  private async sendToStream(js: JetStreamSession, topic: string, message: Message, options: Nats.PublishOptions): Promise<void> {
    const { client, streams } = js;
    await this.streamFor(topic);
    try {
      await client.publish(topic, message.body, options);
    } catch (err) {
      streams.delete(topic); // the stream may have been deleted behind our back: look again next time
      throw this.publishError(err);
    }
  }

  protected async listen(topic: string, handler: Handler, opts: NetworkSubscribeOptions): Promise<StopListening> {
    if (this.jetstream) return this.consume(this.jetstream, topic, handler, opts);
    const connection = this.connection!;
    // A literal subject is the message's subject: no need to decode msg.subject (a TextDecoder call) per message.
    const literal = wildcardToken(topic.split(".")) === -1;
    const subscription = connection.subscribe(topic, {
      queue: opts.queue,
      callback: (err, msg) => {
        if (err) return this.warn(`subscription to ${topic} failed`, err);
        const { message, error } = decodeEnvelope(msg.data);
        void this.deliver(handler, literal ? topic : msg.subject, error ? this.toMessage(msg) : message, NOTHING_TO_SETTLE, opts);
      },
    });
    await connection.flush(); // the server has the subscription before subscribe() returns
    return async () => {
      subscription.unsubscribe();
      await connection.flush().catch(() => {});
    };
  }

  private async consume(js: JetStreamSession, topic: string, handler: Handler, opts: NetworkSubscribeOptions): Promise<StopListening> {
    const { AckPolicy, DeliverPolicy } = js.lib;
    const stream = await this.streamFor(topic);
    const name = engineName(opts.queue ?? `tsmicro-${randomUUID()}`);
    await js.manager.consumers.add(stream, {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      filter_subject: topic,
      ...(opts.queue ? {} : { inactive_threshold: this.lib!.nanos(ABANDONED_CONSUMER_MS) }),
    });
    const consumer = await js.client.consumers.get(stream, name);
    const prefetch = typeof opts.prefetch === "number" ? { max_messages: opts.prefetch } : {};
    // consume() follows the consumer across reconnects and server restarts by itself, retrying
    // every `expires` ms: 5 s rather than the default 30 s, so a restart costs seconds.
    const messages = await consumer.consume({ ...prefetch, expires: PULL_EXPIRES_MS });
    const loop = (async () => {
      for await (const msg of messages) {
        const settlement = { ack: async () => msg.ack(), nack: async () => msg.nak() };
        await this.deliver(handler, msg.subject, this.toMessage(msg), settlement, opts);
      }
    })();
    return async () => {
      await messages.close();
      await loop;
      if (!opts.queue) await js.manager.consumers.delete(stream, name).catch(() => {});
    };
  }

  /** The stream capturing topic: an existing one, or a new interest-retention stream of its own. */
  private streamFor(topic: string): Promise<string> {
    const { streams, manager, lib } = this.jetstream!;
    let stream = streams.get(topic);
    if (!stream) {
      stream = (async () => {
        try {
          return await manager.streams.find(topic);
        } catch (err) {
          if ((err as Error).name !== "StreamNotFoundError") throw err;
        }
        const name = engineName(topic);
        // Limits retention, by age: interest retention would drop consumed messages at once, but
        // nats-server 2.9 loses acknowledged messages of interest streams across a restart.
        const maxAge = this.lib!.nanos(this.opts.jetstreamMaxAge ?? DEFAULT_MAX_AGE_MS);
        await manager.streams.add({ name, subjects: [topic], retention: lib.RetentionPolicy.Limits, storage: lib.StorageType.File, max_age: maxAge });
        return name;
      })();
      streams.set(topic, stream);
      stream.catch(() => streams.delete(topic));
    }
    return stream;
  }

  /**
   * Hands the outbox to the client and resolves once the server has processed it. The publishes
   * of one event-loop turn go to the client after the turn's microtasks (or OUTBOX_BYTES at a
   * time), followed by one PING. Handed over one by one, they left in a socket write per microtask
   * turn, and publishers that await one another publish over many of them (the bench's publisher
   * wrote every 32 events, 40% of its CPU); and they share one PING/PONG round trip (one per
   * publish cost 4× the CPU).
   */
  private flushed(connection: Nats.NatsConnection): Promise<void> {
    this.pendingFlush ??= new Promise<void>((resolve, reject) => {
      process.nextTick(() => {
        this.pendingFlush = undefined;
        this.handOver(connection);
        const failure = this.outboxFailure;
        this.outboxFailure = undefined;
        if (failure) return reject(failure);
        this.whileReconnecting(connection.flush()).then(resolve, reject);
      });
    });
    return this.pendingFlush;
  }

  /** A publish failure as the caller should see it: over max_payload is bad input, anything else as it came. */
  private publishError(err: unknown): unknown {
    return /max_payload/.test(String(err)) ? this.payloadTooLarge() : err;
  }

  private payloadTooLarge(): BrokerInputError {
    const limit = this.connection?.info?.max_payload;
    return new BrokerInputError(`nats broker: message (its envelope of headers and base64 body) exceeds the server's max_payload of ${limit} bytes`);
  }

  /** NATS headers of a message; messages mostly repeat a few header sets, whose (read-only) objects are kept. */
  private toNatsHeaders(header: Record<string, string>): Nats.MsgHdrs | undefined {
    let key = "";
    for (const name in header) key += `${name}\0${header[name]}\0`;
    if (key === "") return undefined;
    let natsHeaders = this.natsHeaders.get(key);
    if (!natsHeaders) {
      natsHeaders = this.lib!.headers();
      for (const [name, value] of Object.entries(header)) natsHeaders.set(name, value);
      if (this.natsHeaders.size >= 256) this.natsHeaders.clear();
      this.natsHeaders.set(key, natsHeaders);
    }
    return natsHeaders;
  }

  private toMessage(msg: { headers?: Nats.MsgHdrs; data: Uint8Array }): Message {
    const header: Record<string, string> = {};
    // The iterator, not keys() and get(): get() searches every key again.
    if (msg.headers) for (const [name, values] of msg.headers) header[name] = values[0] ?? "";
    return { header, body: msg.data };
  }
}

/** Index of the first wildcard token of a subject's tokens, or -1. */
function wildcardToken(tokens: string[]): number {
  return tokens.findIndex((t) => t === "*" || t === ">");
}

/** Stream and consumer names allow no dots, wildcards, slashes or spaces: sanitize, and keep distinct names distinct. */
function engineName(text: string): string {
  const hash = createHash("sha256").update(text).digest("hex").slice(0, 8);
  return `${text.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 200)}-${hash}`;
}
