/**
 * Google Cloud Pub/Sub broker (@google-cloud/pubsub), for the Pub/Sub emulator and the service.
 *
 * - The address (`googlepubsub://host:port`, else PUBSUB_EMULATOR_HOST, else 127.0.0.1:8085) is
 *   an emulator, spoken to in plaintext without credentials; `pubsub.googleapis.com:443` is the
 *   service, with the application default credentials. The project is the `projectId` option,
 *   else GOOGLEPUBSUB_PROJECT_ID (go-micro's variable), else GOOGLE_CLOUD_PROJECT, else "tsmicro".
 * - A topic is a Pub/Sub topic of the same name, created when a publish or subscribe finds it
 *   missing. The body is the message data, headers are its attributes. publish() resolves once
 *   the server returned the message id (the client batches publishes for up to 10 ms).
 * - A queue group is one subscription shared by its members: messages wait there while the whole
 *   group is away. It is named after the group, as go-micro names it, so Go and tsmicro members
 *   share it; a Pub/Sub subscription belongs to one topic, so where the group's subscription
 *   exists for another topic (one group name on several topics) tsmicro members use
 *   "<group>:<topic>" instead (see groupSubscription). A subscriber
 *   without a queue gets a subscription of its own, deleted when it unsubscribes (and expiring
 *   after a day unused, should its process die first).
 * - Subscribers pull over a stream with flow control (`prefetch` messages at a time, default 100).
 *   A message is acked after the handler returns (or calls ack(), with autoAck: false); a handler
 *   that throws nacks it, so it comes again.
 * - When a subscription fails for good — the emulator keeps everything in memory, so after a
 *   restart every topic and subscription is gone — the subscriber creates it again and resumes.
 *
 * Limits: a message needs a body or at least one header (Pub/Sub refuses empty ones) and at most
 * 10 MB of body and headers. The service also refuses attribute keys over 256 bytes or starting
 * with "goog", values over 1024 bytes and more than 100 attributes; the emulator accepts them.
 */
import { createHash, randomUUID } from "node:crypto";
import type * as PubSub from "@google-cloud/pubsub";
import { importOptional } from "../cmd/optional-package.ts";
import type { Handler, Message } from "./broker.ts";
import { singleFlight } from "../single-flight.ts";
import { BrokerInputError, NetworkBroker, retry, type NetworkBrokerOptions, type NetworkSubscribeOptions, type StopListening } from "./shared.ts";

export interface GooglePubSubBrokerOptions extends NetworkBrokerOptions {
  /** Google Cloud project of the topics and subscriptions. */
  projectId?: string;
  /** Messages a subscriber holds (being handled or waiting) at once (default 100); also a subscribe option. */
  prefetch?: number;
}

// Pub/Sub topic and subscription ids: a letter, then 2-254 letters, digits or -_.~+%; not "goog…".
const RESOURCE_ID = /^(?!goog)[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$/;
const NAME_CHARACTER = /^[A-Za-z0-9\-_.~+]$/;
const MAX_MESSAGE_BYTES = 10_000_000;
const CONNECT_TIMEOUT_MS = 5_000;
/** Passed through to the gRPC channels: reconnect within a second once a restarted server is back (by default gRPC backs off up to 2 minutes). */
const GRPC_CHANNEL_OPTIONS = { "grpc.max_reconnect_backoff_ms": 1_000 };
/** A subscriber's own subscription outlives a process that died without unsubscribing by this long (Pub/Sub's minimum). */
const ABANDONED_SUBSCRIPTION_SECONDS = 24 * 60 * 60;
// gRPC status codes.
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;
const PERMISSION_DENIED = 7;

export default class GooglePubSubBroker extends NetworkBroker {
  protected declare opts: GooglePubSubBrokerOptions;
  private lib?: typeof PubSub;
  private client?: PubSub.PubSub;
  /** Topic objects hold the client's publish batches: one per topic. */
  private readonly topics = new Map<string, PubSub.Topic>();
  /** Topics being created, so concurrent publishes that found one missing create it once. */
  private readonly creating = new Map<string, Promise<void>>();

  constructor(opts: GooglePubSubBrokerOptions = {}) {
    super("googlepubsub", process.env.PUBSUB_EMULATOR_HOST || "127.0.0.1:8085", opts);
  }

  protected async open(): Promise<void> {
    this.lib = await importOptional<typeof PubSub>("@google-cloud/pubsub", "googlepubsub");
    const [address, ...more] = this.serverAddresses();
    if (more.length) throw new Error("Pub/Sub takes one server address");
    const emulator = !/\.googleapis\.com(:\d+)?$/.test(address!);
    this.client = new this.lib.PubSub({
      projectId: this.opts.projectId || process.env.GOOGLEPUBSUB_PROJECT_ID || process.env.GOOGLE_CLOUD_PROJECT || "tsmicro",
      apiEndpoint: address,
      // Plaintext, no credentials; a set universe keeps the auth library from asking a cloud metadata server for one.
      ...(emulator ? { emulatorMode: true, universeDomain: "googleapis.com" } : {}),
      ...GRPC_CHANNEL_OPTIONS,
    });
    // Fail connect() clearly when no server answers; one that refuses the listing did answer.
    try {
      await this.client.getTopics({ pageSize: 1, gaxOpts: { timeout: CONNECT_TIMEOUT_MS } });
    } catch (err) {
      if (grpcCode(err) !== PERMISSION_DENIED) throw err;
    }
  }

  protected async close(): Promise<void> {
    const flushes = [...this.topics.values()].map((topic) => topic.flush());
    await this.whileReconnecting(Promise.all(flushes)).catch((err) => this.warn("publishes still pending at disconnect", err));
    this.topics.clear();
    await this.client?.close();
    this.client = undefined;
  }

  protected override topicProblem(topic: string): string | undefined {
    if (!RESOURCE_ID.test(topic))
      return 'Pub/Sub topics are 3-255 characters of letters, digits and -_.~+%, starting with a letter but not with "goog"';
    return undefined;
  }

  protected send(topic: string, message: Message): Promise<void> {
    const data = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength);
    const attributes = message.header ?? {};
    let size = data.length;
    for (const key in attributes) size += Buffer.byteLength(key) + Buffer.byteLength(attributes[key]!);
    // Checked here: the client batches publishes, and one refused message fails its whole batch.
    if (size === 0) // header keys are never empty: no body and no header
      return Promise.reject(new BrokerInputError("googlepubsub broker: a message needs a body or at least one header (Pub/Sub refuses empty messages)"));
    if (size > MAX_MESSAGE_BYTES)
      return Promise.reject(new BrokerInputError(`googlepubsub broker: message of ${size} bytes (body plus headers) exceeds Pub/Sub's limit of 10 MB`));
    return this.whileReconnecting(this.publishCreatingTopic(topic, { data, attributes }));
  }

  private async publishCreatingTopic(topic: string, message: PubSub.protos.google.pubsub.v1.IPubsubMessage): Promise<void> {
    try {
      await this.topic(topic).publishMessage(message);
    } catch (err) {
      if (grpcCode(err) === INVALID_ARGUMENT) throw new BrokerInputError(`googlepubsub broker: the server refused the message: ${(err as Error).message}`);
      if (grpcCode(err) !== NOT_FOUND) throw err;
      await this.createTopic(topic);
      await this.topic(topic).publishMessage(message);
    }
  }

  protected async listen(topic: string, handler: Handler, opts: NetworkSubscribeOptions): Promise<StopListening> {
    const lib = this.lib!;
    const own = !opts.queue;
    const name = opts.queue ? await this.whileReconnecting(this.groupSubscription(topic, opts.queue)) : `tsmicro-${randomUUID()}`;
    if (own) await this.whileReconnecting(this.createSubscription(topic, name, own));
    const subscription = this.client!.subscription(name, {
      flowControl: { maxMessages: Number(opts.prefetch ?? this.opts.prefetch ?? 100), allowExcessMessages: false },
      // While the server is away the stream retries every second at most (by default it backs off to a minute).
      streamingOptions: { retryMaxBackoff: lib.Duration.from({ seconds: 1 }) },
      // Unsubscribing waits this long at most for the last acks to reach the server (by default up to an hour).
      closeOptions: { timeout: lib.Duration.from({ milliseconds: this.reconnectWait() }) },
    });

    const stopped = new AbortController();
    let recovering: Promise<unknown> | undefined;
    // The client retries a broken stream by itself; it gives up on errors such as a subscription that is gone.
    subscription.on("error", (err: Error) => {
      if (stopped.signal.aborted || recovering) return;
      this.warn(`subscription ${name} to ${topic} failed; creating it again`, err);
      recovering = retry(
        async () => {
          await this.createSubscription(topic, name, own);
          subscription.open();
        },
        stopped.signal,
        (failure) => this.warn(`creating subscription ${name} to ${topic} again`, failure),
      ).finally(() => (recovering = undefined));
    });
    subscription.on("message", (received: PubSub.Message) => {
      const settlement = { ack: async () => received.ack(), nack: async () => received.nack() };
      void this.deliver(handler, topic, { header: received.attributes, body: received.data }, settlement, opts);
    });

    return async () => {
      stopped.abort();
      await subscription.close(); // hands back (nacks) what it held but did not handle
      await recovering;
      // Bounded: the client retries teardown calls for a server that is away for a minute by default.
      if (own) await subscription.delete({ timeout: this.reconnectWait() }).catch((err) => this.warn(`deleting subscription ${name}`, err));
    };
  }

  private topic(name: string): PubSub.Topic {
    let topic = this.topics.get(name);
    if (!topic) {
      topic = this.client!.topic(name);
      this.topics.set(name, topic);
    }
    return topic;
  }

  private createTopic(topic: string): Promise<void> {
    return singleFlight(this.creating, topic, () => this.client!.createTopic(topic).then(() => {}, ignoreAlreadyExists));
  }

  /**
   * Creates a queue group's subscription unless it exists, and returns its name: go-micro's, the
   * group's own, unless that subscription belongs to another topic; then "<group>:<topic>".
   */
  private async groupSubscription(topic: string, group: string): Promise<string> {
    const shared = subscriptionName(group);
    await this.createSubscription(topic, shared, false);
    const [metadata] = await this.client!.subscription(shared).getMetadata();
    if (metadata.topic === this.topic(topic).name) return shared;
    const ours = subscriptionName(`${group}:${topic}`);
    await this.createSubscription(topic, ours, false);
    return ours;
  }

  /** Creates the subscription (and its topic) unless it exists. */
  private async createSubscription(topic: string, name: string, own: boolean): Promise<void> {
    const options = own ? { expirationPolicy: { ttl: { seconds: ABANDONED_SUBSCRIPTION_SECONDS } } } : {};
    try {
      await this.client!.createSubscription(topic, name, options);
    } catch (err) {
      if (grpcCode(err) !== NOT_FOUND) return ignoreAlreadyExists(err);
      await this.createTopic(topic);
      await this.client!.createSubscription(topic, name, options).catch(ignoreAlreadyExists);
    }
  }
}

/**
 * A queue group's subscription id: the name with the characters Pub/Sub ids cannot hold
 * percent-encoded; a name that would still be invalid (it starts with a non-letter or is too long)
 * gets a prefix, and a hash of the whole in place of its end.
 */
export function subscriptionName(name: string): string {
  const encoded = Array.from(name, (c) => (NAME_CHARACTER.test(c) ? c : percentEncoded(c))).join("");
  if (RESOURCE_ID.test(encoded)) return encoded;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 16);
  return `q-${encoded.slice(0, 200)}-${hash}`;
}

function percentEncoded(character: string): string {
  return Array.from(Buffer.from(character), (byte) => `%${byte.toString(16).toUpperCase().padStart(2, "0")}`).join("");
}

function grpcCode(err: unknown): number | undefined {
  return (err as { code?: number } | undefined)?.code;
}

/** Rethrows anything but "already exists". */
function ignoreAlreadyExists(err: unknown): void {
  if (grpcCode(err) !== ALREADY_EXISTS) throw err;
}
