/**
 * NSQ broker: straight to nsqd over TCP (no nsqlookupd), on the nsqjs client, and nsqd's HTTP API
 * (`httpAddresses`; by default each nsqd's TCP port + 1, like nsqd's own 4150/4151) for two things
 * its TCP protocol does not offer, described below.
 *
 * - A topic is an NSQ topic. A queue group is the NSQ channel of that name (as go-micro's
 *   plugin does): each message goes to one member, and waits on nsqd while the whole group is
 *   away. A subscriber without a queue reads an ephemeral channel of its own
 *   ("<uuid>#ephemeral"), which nsqd drops when it leaves.
 * - NSQ messages have no headers: they travel in the shared envelope. publish() resolves once
 *   nsqd has answered OK; it refuses a message larger than nsqd's --max-msg-size, which it asks
 *   the HTTP API for (nsqd would drop the connection). A delivery is finished (FIN) after the
 *   handler returns, or when it calls ack() (autoAck: false); a handler that throws requeues it
 *   (REQ), to be delivered again after `requeueDelay` ms times its attempts (at most a minute).
 *   A queue member that unsubscribes requeues what it still holds, so another member gets it at once.
 * - nsqd keeps what is published to a topic without channels (in memory, then on disk) and hands
 *   it to the topic's first channel. So that a new subscription gets only what is published from
 *   then on, as with every other broker, subscribing to such a topic first empties it through the
 *   HTTP API.
 * - Queue groups keep acknowledged messages across a graceful nsqd restart (on SIGTERM nsqd writes
 *   its memory queues and in-flight messages to disk); a crash loses what nsqd held in memory.
 * - The publisher reconnects with backoff (publish() and subscribe() wait up to `reconnectWait`
 *   ms meanwhile); subscribers reconnect every second and subscribe again by themselves. With
 *   several nsqd addresses the publisher uses the first that answers, and a subscriber reads all.
 */
import { randomUUID } from "node:crypto";
import type * as Nsq from "nsqjs";
import { importOptional } from "../cmd/optional-package.ts";
import type { Handler, Message } from "./broker.ts";
import {
  BrokerInputError,
  NetworkBroker,
  decodeEnvelope,
  encodeEnvelope,
  retry,
  type NetworkBrokerOptions,
  type Settlement,
  type NetworkSubscribeOptions,
  type StopListening,
} from "./shared.ts";

export interface NsqBrokerOptions extends NetworkBrokerOptions {
  /** nsqd HTTP API addresses, in the order of `addresses` (default: each one's TCP port + 1). */
  httpAddresses?: string[];
  /** Unfinished messages per subscriber and nsqd (default 10): bounds concurrent handler calls. */
  prefetch?: number;
  /** Delay before a failed message is delivered again, times its attempts (default 1 000 ms, at most 60 000). */
  requeueDelay?: number;
}

// nsqd's rule for topic and channel names.
const NAME = /^[.a-zA-Z0-9_-]{1,64}$/;
const EPHEMERAL = "#ephemeral";
const NAME_RULE = `1 to 64 letters, digits, '.', '_' or '-', optionally followed by ${EPHEMERAL} (up to 64 characters in all)`;
const MAX_REQUEUE_DELAY_MS = 60_000;
const HTTP_TIMEOUT_MS = 5_000;

function validName(name: string): boolean {
  return name.length <= 64 && NAME.test(name.endsWith(EPHEMERAL) ? name.slice(0, -EPHEMERAL.length) : name);
}

function hostAndPort(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
}

interface Publisher {
  writer: Nsq.Writer;
  address: string;
  /** nsqd's --max-msg-size, if its HTTP API told. */
  maxMessageBytes?: number;
}

export default class NsqBroker extends NetworkBroker {
  protected declare opts: NsqBrokerOptions;
  private nsq?: typeof Nsq;
  /** The publisher's connection, or the reconnection that will provide the next one. */
  private publisher?: Promise<Publisher>;
  private lifetime = new AbortController();

  constructor(opts: NsqBrokerOptions = {}) {
    super("nsq", "127.0.0.1:4150", opts);
  }

  protected async open(): Promise<void> {
    this.nsq = await importOptional<typeof Nsq>("nsqjs", "nsq");
    this.lifetime = new AbortController();
    this.publisher = this.startPublisher();
    await this.publisher;
  }

  protected async close(): Promise<void> {
    this.lifetime.abort();
    const publisher = await this.publisher?.catch(() => undefined);
    publisher?.writer.close();
    this.publisher = undefined;
  }

  protected override topicProblem(topic: string): string | undefined {
    return validName(topic) ? undefined : `NSQ topics are ${NAME_RULE}`;
  }

  /** Closing the writer fails what it has not sent, or nsqd has not answered. */
  protected override closeFailsUnfinishedPublishes(): boolean {
    return true;
  }

  protected async send(topic: string, message: Message): Promise<void> {
    const { writer, address, maxMessageBytes } = await this.whileReconnecting(this.publisher!);
    const envelope = encodeEnvelope(message);
    if (maxMessageBytes !== undefined && envelope.length > maxMessageBytes)
      throw new BrokerInputError(
        `nsq broker: the message (${envelope.length} bytes with its headers) is larger than the --max-msg-size of nsqd ${address} (${maxMessageBytes} bytes)`,
      );
    await new Promise<void>((resolve, reject) =>
      writer.publish(topic, envelope, (err) =>
        err ? reject(new Error(`nsq broker: nsqd did not acknowledge the message to ${topic}: ${err.message}`, { cause: err })) : resolve(),
      ),
    );
  }

  protected async listen(topic: string, handler: Handler, opts: NetworkSubscribeOptions): Promise<StopListening> {
    const channel = opts.queue ?? `${randomUUID()}${EPHEMERAL}`;
    if (!validName(channel)) throw new BrokerInputError(`nsq broker: invalid queue ${JSON.stringify(channel)}: NSQ channels are ${NAME_RULE}`);
    await Promise.all(this.serverAddresses().map((address) => this.emptyIfUnsubscribed(address, topic)));

    const unsettled = new Set<Nsq.Message>();
    let stopped = false;
    const requeueDelay = this.opts.requeueDelay ?? 1_000;
    const onMessage = (msg: Nsq.Message) => {
      if (stopped) return msg.requeue(0, false);
      unsettled.add(msg);
      const { message, error } = decodeEnvelope(msg.body);
      const settlement: Settlement = {
        ack: async () => void (unsettled.delete(msg) && msg.finish()),
        nack: async () => void (unsettled.delete(msg) && msg.requeue(Math.min(MAX_REQUEUE_DELAY_MS, requeueDelay * msg.attempts), false)),
      };
      void this.deliver(handler, topic, message, settlement, opts, error);
    };
    const readers = this.serverAddresses().map((address) => this.startReader(address, topic, channel, opts, onMessage));

    const stop = async () => {
      stopped = true;
      // nsqd would hand messages in flight to a member that left to another only after its --msg-timeout.
      for (const msg of unsettled) msg.requeue(0, false);
      unsettled.clear();
      await new Promise(setImmediate); // nsqjs writes responses on the next tick: before the connection closes
      for (const { reader } of readers) reader.close();
    };
    try {
      await this.whileReconnecting(Promise.all(readers.map(({ subscribed }) => subscribed)));
    } catch (err) {
      await stop();
      throw err;
    }
    return stop;
  }

  /** nsqd hands what a topic without channels holds to its first channel: drop it, so a new subscription starts from now. */
  private async emptyIfUnsubscribed(address: string, topic: string): Promise<void> {
    const query = `topic=${encodeURIComponent(topic)}`;
    try {
      const stats = (await this.httpApi(address, "GET", `/stats?format=json&include_clients=false&include_mem=false&${query}`)) as {
        topics?: Array<{ topic_name: string; depth: number; channels: unknown[] | null }>;
      };
      const found = stats.topics?.find((t) => t.topic_name === topic);
      if (found && !found.channels?.length && found.depth > 0) await this.httpApi(address, "POST", `/topic/empty?${query}`);
    } catch (err) {
      this.warn(`could not check topic ${topic} through the HTTP API of nsqd ${address}: a new subscription may get older messages`, err);
    }
  }

  /** Calls the HTTP API of the nsqd at a TCP address. */
  private async httpApi(address: string, method: "GET" | "POST", path: string): Promise<unknown> {
    const index = this.serverAddresses().indexOf(address);
    const [host, port] = hostAndPort(address);
    const httpAddress = this.opts.httpAddresses?.[index] ?? `${host}:${port + 1}`;
    const response = await fetch(`http://${httpAddress}${path}`, { method, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return response.json();
  }

  /** A reader of one nsqd; it reconnects and subscribes again by itself. */
  private startReader(address: string, topic: string, channel: string, opts: NetworkSubscribeOptions, onMessage: (msg: Nsq.Message) => void) {
    const reader = new this.nsq!.Reader(topic, channel, {
      nsqdTCPAddresses: [address],
      maxInFlight: Number(opts.prefetch ?? this.opts.prefetch ?? 10),
      lookupdPollInterval: 1, // also how often nsqjs tries to reconnect, in seconds
    });
    let healthy = true; // one warning per lost connection, not one per reconnect attempt
    reader.on("nsqd_connected", () => (healthy = true));
    reader.on("error", (err) => {
      if (healthy) this.warn(`subscriber to ${topic} lost nsqd ${address}, reconnecting`, err);
      healthy = false;
    });
    reader.on("message", onMessage);
    const subscribed = new Promise<void>((resolve) => reader.once("ready", resolve));
    reader.connect();
    return { reader, subscribed };
  }

  /** Connects the publisher to the first nsqd that answers, and asks it for its message size limit. */
  private async startPublisher(): Promise<Publisher> {
    const errors: unknown[] = [];
    for (const address of this.serverAddresses()) {
      let writer: Nsq.Writer;
      try {
        writer = await this.openWriter(address);
      } catch (err) {
        errors.push(err);
        continue;
      }
      const maxMessageBytes = await this.httpApi(address, "GET", "/config/max_msg_size").then(
        (size) => Number(size),
        (err) => void this.warn(`could not ask nsqd ${address} for its --max-msg-size: larger messages make it drop the connection`, err),
      );
      return { writer, address, maxMessageBytes };
    }
    throw errors.length === 1 ? errors[0] : new AggregateError(errors, "no nsqd answered");
  }

  private openWriter(address: string): Promise<Nsq.Writer> {
    const writer = new this.nsq!.Writer(...hostAndPort(address));
    return new Promise((resolve, reject) => {
      let ready = false;
      let lastError: Error | undefined;
      // nsqjs may report one failure twice: keep listening, or the second would be thrown.
      writer.on("error", (err) => {
        lastError = err;
        if (!ready) reject(err);
      });
      writer.on("closed", () => {
        if (!ready) return reject(lastError ?? new Error(`${address} closed the connection`));
        if (this.lifetime.signal.aborted) return;
        this.warn(`publisher lost nsqd ${address}, reconnecting`, lastError ?? "closed by nsqd");
        this.reconnect();
      });
      writer.on("ready", () => {
        ready = true;
        resolve(writer);
      });
      writer.connect();
    });
  }

  /** The publisher's connection is gone (nsqd stopped, or failed a message): connect again, with backoff. */
  private reconnect(): void {
    const { signal } = this.lifetime;
    const reconnecting = retry(() => this.startPublisher(), signal, (err) => this.warn("publisher reconnect failed", err)).then((publisher) => {
      if (!publisher) throw new Error("nsq broker: disconnected");
      return publisher;
    });
    reconnecting.catch(() => {}); // waiters see the failure through whileReconnecting()
    this.publisher = reconnecting;
  }
}
