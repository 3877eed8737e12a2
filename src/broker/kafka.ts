/**
 * Kafka broker (@platformatic/kafka). Topics are Kafka topics (created on first use by the
 * server's defaults); the record value is go-micro's JSON broker.Message envelope (headers and
 * base64 body), as go-micro's kafka broker writes and reads it (a value that is no envelope
 * arrives as the body, with the record headers); publish() resolves once all in-sync
 * replicas have the record. A queue group is the consumer group "<group>", go-micro's name, that
 * resumes from its committed offsets: tsmicro and go-micro members of a group share the topic's
 * partitions (tsmicro joins with the "range" assignment go-micro's Sarama offers; a member gets
 * whole partitions, so a topic is shared only as many ways as it has partitions). A member gets
 * records of its own topic only, whatever other topics the group's members read. A subscriber
 * without a queue gets a consumer group of its own that starts
 * at the end of the topic. An offset is committed after the handler returns (or calls ack(), with
 * autoAck: false); a handler that throws gets the same record again, after a growing pause,
 * before the subscriber moves on. Consumers that fail (server restart) are created again.
 *
 * Note: Kafka's default message.max.bytes (about 1 MB) refuses 1 MiB bodies; raise it on the
 * server (or max.message.bytes on the topic) for larger messages. A message over the limit fails
 * publish() as bad input.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import type * as Kafka from "@platformatic/kafka";
import { importOptional } from "../cmd/optional-package.ts";
import type { Handler, Message, SubscribeOptions } from "./broker.ts";
import {
  BrokerInputError,
  NetworkBroker,
  decodeEnvelope,
  encodeEnvelope,
  keepRunning,
  retry,
  type NetworkBrokerOptions,
  type StopListening,
} from "./shared.ts";

type StringHeaders = { headerKey: Kafka.Serializer<string>; headerValue: Kafka.Serializer<string> };
type Producer = Kafka.Producer<Buffer, Buffer, string, string>;
type Consumer = Kafka.Consumer<Buffer, Buffer, string, string>;

const TOPIC_RULE = /^[A-Za-z0-9._-]{1,249}$/;

/**
 * Consumer-group timings (ms). A member heartbeats every second, so a member joining or leaving
 * costs the others about a second of rebalance instead of the client's default 3; one that died
 * without leaving (its server restarted, its process killed) is dropped after 10 s rather than 60.
 * A fetch waits at most half a second for records: closing a consumer waits for its fetch.
 */
const GROUP_TIMINGS = { sessionTimeout: 10_000, rebalanceTimeout: 10_000, heartbeatInterval: 1_000, maxWaitTime: 500 };

/**
 * A group's members must offer a common assignment protocol: go-micro's Sarama offers only
 * "range" (the client's own default is "roundrobin"). Metadata version 0 is what Sarama reads.
 */
const GROUP_PROTOCOLS = [{ name: "range", version: 0 }];

/**
 * Kafka's range assignment, for when a tsmicro member leads the group: each topic's partitions in
 * contiguous runs over the members subscribed to it (sorted by id), the first ones one longer. Every
 * member's topics are assigned: the client passes only the leader's own, but a group's members
 * may read different topics (one group name on several topics, as go-micro names groups).
 */
const rangeAssigner: Kafka.GroupPartitionsAssigner = (_leader, members, _leaderTopics, metadata) => {
  const assignments = new Map([...members.keys()].map((memberId) => [memberId, new Map<string, Kafka.GroupAssignment>()]));
  const topics = new Set([...members.values()].flatMap((m) => m.topics ?? []));
  for (const topic of topics) {
    const partitionsCount = metadata.topics.get(topic)?.partitionsCount ?? 0;
    const subscribed = [...members.values()].filter((m) => m.topics?.includes(topic)).map((m) => m.memberId).sort();
    let next = 0;
    subscribed.forEach((memberId, i) => {
      const count = Math.floor(partitionsCount / subscribed.length) + (i < partitionsCount % subscribed.length ? 1 : 0);
      const partitions = Array.from({ length: count }, (_, k) => next + k);
      next += count;
      if (count) assignments.get(memberId)!.set(topic, { topic, partitions });
    });
  }
  return [...assignments].map(([memberId, assigned]) => ({ memberId, assignments: assigned }));
};

export default class KafkaBroker extends NetworkBroker {
  private kafka?: typeof Kafka;
  private producer?: Producer;

  constructor(opts: NetworkBrokerOptions = {}) {
    super("kafka", "127.0.0.1:9092", opts);
  }

  protected async open(): Promise<void> {
    this.kafka = await importOptional<typeof Kafka>("@platformatic/kafka", "kafka");
    const serializers: StringHeaders = { headerKey: this.kafka.stringSerializer, headerValue: this.kafka.stringSerializer };
    this.producer = new this.kafka.Producer({
      clientId: `tsmicro-${randomUUID()}`,
      bootstrapBrokers: this.serverAddresses(),
      autocreateTopics: true,
      acks: -1, // all in-sync replicas
      serializers,
    });
    // Fail connect() clearly when no server answers.
    await this.producer.metadata({ topics: [] });
  }

  protected async close(): Promise<void> {
    await this.producer?.close();
    this.producer = undefined;
  }

  protected override topicProblem(topic: string): string | undefined {
    if (!TOPIC_RULE.test(topic) || topic === "." || topic === "..")
      return "Kafka topics are 1-249 characters of letters, digits, '.', '_' and '-'";
    return undefined;
  }

  /** Closing the producer fails the produce requests still awaiting their response. */
  protected override closeFailsUnfinishedPublishes(): boolean {
    return true;
  }

  protected async send(topic: string, message: Message): Promise<void> {
    const sent = this.producer!.send({ messages: [{ topic, value: encodeEnvelope(message) }] });
    await this.whileReconnecting(
      sent.catch((err) => {
        throw publishError(topic, err);
      }),
    );
  }

  protected async listen(topic: string, handler: Handler, opts: SubscribeOptions): Promise<StopListening> {
    const kafka = this.kafka!;
    const groupId = opts.queue || `tsmicro-${randomUUID()}`;
    const stopped = new AbortController();
    let consumer: Consumer | undefined;
    let stream: Kafka.MessagesStream<Buffer, Buffer, string, string> | undefined;

    const start = async () => {
      consumer = new kafka.Consumer({
        clientId: `tsmicro-${randomUUID()}`,
        bootstrapBrokers: this.serverAddresses(),
        groupId,
        autocreateTopics: true,
        ...GROUP_TIMINGS,
        protocols: GROUP_PROTOCOLS,
        partitionAssigner: rangeAssigner,
        deserializers: { headerKey: kafka.stringDeserializer, headerValue: kafka.stringDeserializer },
      });
      stream = await consumer.consume({
        topics: [topic],
        autocommit: false,
        mode: kafka.MessagesStreamModes.COMMITTED,
        fallbackMode: kafka.MessagesStreamFallbackModes.LATEST, // a new group starts at the end
      });
      // After each (re)assignment the stream looks up where its partitions start: the group's
      // committed offset or, where the group has none yet, the partition's end. That start is
      // committed at once, so a member that takes a partition over in a later rebalance (members of
      // all the group's topics join one group) resumes there, not at a later end.
      const started = stream;
      started.on("offsets", () => void commitStarts(consumer!, started, topic).catch((err) => this.warn(`committing where ${topic} starts`, err)));
      // Until then "the end" is not fixed, and a message published right after subscribe() could count as before it.
      await once(stream, "offsets");
    };
    const stop = async () => {
      await stream?.close().catch(() => {});
      await consumer?.close().catch(() => {});
    };

    await start();
    // The last offset this subscriber handled per partition: after a rebalance the stream may hand
    // over records it fetched before (for a partition now another member's, or again from the
    // group's committed offset), which would be delivered twice.
    const handled = new Map<number, bigint>();
    const stillMine = (record: Kafka.Message<Buffer, Buffer, string, string>) =>
      !!consumer?.assignments?.some((a) => a.topic === record.topic && a.partitions.includes(record.partition)) &&
      (handled.get(record.partition) ?? -1n) < record.offset;
    const loop = keepRunning(
      async () => {
        try {
          if (!stream) await start();
          for await (const record of stream!) {
            if (!stillMine(record)) continue;
            await this.deliverUntilHandled(handler, record, opts, stopped.signal);
            handled.set(record.partition, record.offset);
          }
          if (!stopped.signal.aborted) throw new Error("the message stream ended");
        } finally {
          await stop();
          stream = undefined;
        }
      },
      stopped.signal,
      (err) => this.warn(`consumer of ${topic} failed; starting it again`, err),
    );

    return async () => {
      stopped.abort();
      await stop();
      await loop;
    };
  }

  /** Kafka cannot skip one record and redeliver it later: a failed record is retried in place. */
  private async deliverUntilHandled(handler: Handler, record: Kafka.Message<Buffer, Buffer, string, string>, opts: SubscribeOptions, signal: AbortSignal) {
    const value = record.value ?? Buffer.alloc(0);
    const envelope = decodeEnvelope(value);
    const message = envelope.error ? { header: Object.fromEntries(record.headers), body: value } : envelope.message;
    await retry(
      async () => {
        let failed = false;
        const settlement = { ack: async () => void (await record.commit()), nack: async () => void (failed = true) };
        await this.deliver(handler, record.topic, message, settlement, opts);
        if (failed) throw new Error("handler failed");
      },
      signal,
      () => {}, // deliver() has logged the handler's error
    );
  }
}

/** Commits the offsets the stream starts its assigned partitions of the topic at (the next record to read, Kafka's convention). */
async function commitStarts(consumer: Consumer, stream: Kafka.MessagesStream<Buffer, Buffer, string, string>, topic: string): Promise<void> {
  const partitions = consumer.assignments?.find((a) => a.topic === topic)?.partitions ?? [];
  const offsets = partitions.flatMap((partition) => {
    const offset = stream.offsetsToFetch.get(`${topic}:${partition}`);
    return offset === undefined ? [] : [{ topic, partition, offset, leaderEpoch: -1 }];
  });
  if (offsets.length) await consumer.commit({ offsets });
}

/** A publish failure as the caller should see it, with Kafka's reasons: a message over the size limit is bad input. */
function publishError(topic: string, err: unknown): Error {
  const reasons = innermostErrors(err);
  if (reasons.some((reason) => (reason as { apiId?: string }).apiId === "MESSAGE_TOO_LARGE"))
    return new BrokerInputError("kafka broker: message exceeds the server's message.max.bytes (or the topic's max.message.bytes)");
  return new Error(`kafka broker: publish to ${topic} failed: ${reasons.map((reason) => reason.message).join("; ")}`, { cause: err });
}

/** The client nests its errors (AggregateError of AggregateErrors): the innermost ones say what happened. */
function innermostErrors(err: unknown): Error[] {
  if (err instanceof AggregateError && err.errors.length) return err.errors.flatMap(innermostErrors);
  return [err instanceof Error ? err : new Error(String(err))];
}
