/**
 * RabbitMQ (AMQP 0-9-1) broker. Messages go to a durable topic exchange ("micro", go-micro's
 * name) with the topic as routing key and the header as AMQP headers; they are persistent, and
 * publish() resolves once the server has confirmed one.
 *
 * A queue group is the queue "<group>" bound to the topic, declared as go-micro's rabbitmq broker
 * declares it (not durable, deleted with its last consumer), so tsmicro and go-micro members of a
 * group share its messages. With `durableQueues: true` (go-micro's rabbitmq.DurableQueue()) it is
 * durable instead: messages wait there while the whole group is away and survive a server
 * restart. A queue that exists with other flags is used as it is.
 *
 * Since the queue is named after the group alone, one group on several topics is one queue with a
 * binding per topic, and each member gets messages of all of them (as in go-micro). A delivery
 * goes to this broker's subscriber of its own topic (its routing key) in that group; one no
 * subscriber here has goes back to the queue once, for a member that has one, and is dropped
 * (with a warning) when it comes back.
 *
 * A subscriber without a queue gets an exclusive queue that goes away with it. A delivery is acked
 * after the handler returns (or when it calls ack(), with autoAck: false); a handler that throws
 * nacks it and it is delivered again. `prefetch` (broker or subscribe option, default 10) bounds
 * each subscriber's unacked messages, and so its concurrent handler calls.
 *
 * amqplib does not reconnect: this broker does, with backoff, and then re-creates every
 * subscription. Meanwhile publish() and subscribe() wait up to `reconnectWait` ms.
 */
import type * as Amqp from "amqplib";
import { importOptional } from "../cmd/optional-package.ts";
import type { Handler, Message } from "./broker.ts";
import { BrokerInputError, NetworkBroker, retry, type NetworkBrokerOptions, type NetworkSubscribeOptions, type StopListening } from "./shared.ts";

export interface RabbitMQBrokerOptions extends NetworkBrokerOptions {
  /** Topic exchange to publish to and bind queues on (default "micro"). */
  exchange?: string;
  /** Unacked messages per subscriber (default 10). */
  prefetch?: number;
  /** Declare queue groups' queues durable, as go-micro's rabbitmq.DurableQueue() does (default false, go-micro's default). */
  durableQueues?: boolean;
}

interface Session {
  connection: Amqp.ChannelModel;
  publisher: Amqp.ConfirmChannel;
}

interface Consumer {
  readonly topic: string;
  readonly handler: Handler;
  readonly opts: NetworkSubscribeOptions;
  channel?: Amqp.Channel;
}

const MAX_NAME_BYTES = 255; // routing keys and queue names are AMQP short strings

export default class RabbitMQBroker extends NetworkBroker {
  protected declare opts: RabbitMQBrokerOptions;
  private amqp?: typeof Amqp;
  /** The current session, or the reconnection that will provide the next one. */
  private session?: Promise<Session>;
  private lifetime = new AbortController();
  private readonly consumers = new Set<Consumer>();

  constructor(opts: RabbitMQBrokerOptions = {}) {
    super("rabbitmq", "127.0.0.1:5672", opts);
  }

  protected async open(): Promise<void> {
    this.amqp = await importOptional<typeof Amqp>("amqplib", "rabbitmq");
    this.lifetime = new AbortController();
    this.session = this.startSession();
    await this.session;
  }

  protected async close(): Promise<void> {
    this.lifetime.abort();
    const session = await this.session?.catch(() => undefined);
    await session?.connection.close().catch(() => {});
    this.session = undefined;
  }

  protected override topicProblem(topic: string): string | undefined {
    if (Buffer.byteLength(topic) > MAX_NAME_BYTES) return `routing keys are limited to ${MAX_NAME_BYTES} bytes`;
    if (topic.split(".").some((word) => word === "*" || word === "#")) return "AMQP wildcard words (* and #) are not supported";
    return undefined;
  }

  /** Closing the connection fails the confirms still awaited. */
  protected override closeFailsUnfinishedPublishes(): boolean {
    return true;
  }

  protected async send(topic: string, message: Message): Promise<void> {
    const { publisher } = await this.currentSession();
    const body = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength);
    await new Promise<void>((resolve, reject) =>
      publisher.publish(this.exchange(), topic, body, { headers: message.header, persistent: true }, (err) =>
        err ? reject(new Error(`rabbitmq broker: the server did not confirm the message to ${topic}: ${err}`)) : resolve(),
      ),
    );
  }

  protected async listen(topic: string, handler: Handler, opts: NetworkSubscribeOptions): Promise<StopListening> {
    if (opts.queue && Buffer.byteLength(opts.queue) > MAX_NAME_BYTES)
      throw new BrokerInputError(`rabbitmq broker: queue name "${opts.queue}" is longer than ${MAX_NAME_BYTES} bytes`);
    const consumer: Consumer = { topic, handler, opts };
    await this.attach(await this.currentSession(), consumer);
    this.consumers.add(consumer);
    return async () => {
      this.consumers.delete(consumer);
      await consumer.channel?.close().catch(() => {}); // unacked messages go back to the queue
    };
  }

  private exchange(): string {
    return this.opts.exchange ?? "micro";
  }

  private currentSession(): Promise<Session> {
    return this.whileReconnecting(this.session!);
  }

  private async startSession(): Promise<Session> {
    const connection = await this.amqp!.connect(this.serverUrls(["amqp", "amqps"])[0]!);
    connection.on("error", () => {}); // always followed by "close", handled below
    try {
      await this.declareExchange(connection);
      const publisher = await connection.createConfirmChannel();
      const session = { connection, publisher };
      connection.once("close", (err?: Error) => this.reconnect(err));
      this.closeWhenChannelFails(session, publisher, () => true);
      return session;
    } catch (err) {
      await connection.close().catch(() => {});
      throw err;
    }
  }

  /**
   * Declares the durable topic exchange, or takes it as it is when it exists with other flags:
   * go-micro declares "micro" not durable, and a mixed fleet shares whichever came first.
   */
  private async declareExchange(connection: Amqp.ChannelModel): Promise<void> {
    await declareOrTakeAsItIs(connection, (channel) => channel.assertExchange(this.exchange(), "topic", { durable: true }));
  }

  /** A lost connection: connect again, resubscribe everyone, then let publishers through. */
  private reconnect(cause?: Error): void {
    const { signal } = this.lifetime;
    if (signal.aborted) return;
    this.warn("connection lost", cause ?? "closed by the server");
    const reconnecting = (async () => {
      const session = await retry(() => this.startSession(), signal, (err) => this.warn("reconnect failed", err));
      if (!session) throw new Error("rabbitmq broker: disconnected");
      for (const consumer of this.consumers)
        await this.attach(session, consumer).catch((err) => this.warn(`resubscribing to ${consumer.topic} failed`, err));
      return session;
    })();
    reconnecting.catch(() => {}); // waiters see the failure through currentSession()
    this.session = reconnecting;
  }

  private async attach(session: Session, consumer: Consumer): Promise<void> {
    const { topic, opts } = consumer;
    const channel = await session.connection.createChannel();
    try {
      await channel.prefetch(Number(opts.prefetch ?? this.opts.prefetch ?? 10));
      const group = opts.queue;
      // go-micro's declaration of a group's queue (durable: false, autoDelete: true), or its DurableQueue().
      const flags = this.opts.durableQueues ? { durable: true } : { durable: false, autoDelete: true };
      if (group) await declareOrTakeAsItIs(session.connection, (declaring) => declaring.assertQueue(group, flags));
      const queue = group || (await channel.assertQueue("", { exclusive: true, autoDelete: true })).queue;
      await channel.bindQueue(queue, this.exchange(), topic);
      await channel.consume(queue, (delivery) => {
        // null: the server cancelled the consumer (queue deleted); closing the channel recovers it.
        if (!delivery) return void channel.close().catch(() => {});
        const { routingKey, redelivered } = delivery.fields;
        const receiver = routingKey === topic ? consumer : this.groupMember(group, routingKey);
        if (!receiver) {
          // Another topic bound to the group's queue, with no subscriber here: back to the queue
          // once, for a member that has one; dropped when it comes back.
          if (redelivered) this.warn(`dropped a message of ${routingKey} from queue ${queue}`, "no subscriber of that topic in the group here");
          return channel.nack(delivery, false, !redelivered);
        }
        const message = { header: stringHeaders(delivery.properties.headers), body: delivery.content };
        const settlement = {
          ack: async () => channel.ack(delivery),
          nack: async () => channel.nack(delivery, false, true),
        };
        void this.deliver(receiver.handler, routingKey, message, settlement, receiver.opts);
      });
    } catch (err) {
      await channel.close().catch(() => {});
      throw err;
    }
    consumer.channel = channel;
    this.closeWhenChannelFails(session, channel, () => this.consumers.has(consumer) && consumer.channel === channel);
  }

  /** This broker's subscriber of the topic in the queue group, if any. */
  private groupMember(group: string | undefined, topic: string): Consumer | undefined {
    if (!group) return undefined;
    for (const consumer of this.consumers) if (consumer.opts.queue === group && consumer.topic === topic) return consumer;
    return undefined;
  }

  /** A channel the server closed on us (while still wanted) is recovered by reconnecting everything. */
  private closeWhenChannelFails(session: Session, channel: Amqp.Channel, stillWanted: () => boolean): void {
    channel.once("close", () => {
      if (!this.lifetime.signal.aborted && stillWanted()) void session.connection.close().catch(() => {});
    });
  }
}

/**
 * Declares an exchange or queue on a channel of its own, since a refused declaration closes the
 * channel. One that exists with other flags (a go-micro node declared it) is used as it is.
 */
async function declareOrTakeAsItIs(connection: Amqp.ChannelModel, declare: (channel: Amqp.Channel) => Promise<unknown>): Promise<void> {
  const channel = await connection.createChannel();
  channel.on("error", () => {}); // a refused declaration closes the channel; the rejection says why
  try {
    await declare(channel);
    await channel.close();
  } catch (err) {
    if ((err as { code?: number }).code !== 406) throw err; // 406 PRECONDITION_FAILED: it exists, with other flags
  }
}

function stringHeaders(headers: Record<string, unknown> = {}): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString() : String(v)]));
}
