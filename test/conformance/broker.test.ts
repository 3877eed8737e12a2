/**
 * One conformance suite, run against every broker: memory, http, nats, nats with JetStream, mqtt,
 * rabbitmq, redis (pub/sub fan-out), redis in streams mode, kafka, nsq and googlepubsub (on the
 * Pub/Sub emulator) — all on the servers every development machine and CI run on loopback
 * (KAFKA_BROKERS=host:port,… names another Kafka).
 * Brokers run side by side; each one's cases run in order. Restart cases start a server of their
 * own on a free port. Deliveries are awaited, never slept for; every wait is bounded.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, describe, it, type TestContext } from "node:test";
import type { Broker, BrokerOptions, Event, Message } from "../../src/broker/broker.ts";
import { subscriptionName, type GooglePubSubBrokerOptions } from "../../src/broker/googlepubsub.ts";
import type { MqttBrokerOptions } from "../../src/broker/mqtt.ts";
import type { NatsBrokerOptions } from "../../src/broker/nats.ts";
import type { RabbitMQBrokerOptions } from "../../src/broker/rabbitmq.ts";
import { streamKey, type RedisBrokerOptions } from "../../src/broker/redis.ts";
import { createBroker } from "../../src/cmd/create.ts";
import MemoryRegistry from "../../src/registry/memory.ts";
import {
  KAFKA_SERVER,
  NSQD,
  PUBSUB_EMULATOR,
  RABBITMQ_SERVER_SCRIPT,
  isInstalled,
  startKafka,
  startMosquitto,
  startNats,
  startNsqd,
  startPubSubEmulator,
  startRabbitMQ,
  startRedis,
  type OwnServer,
} from "../helpers/broker-servers.ts";
import { canConnect, skipOrFail, waitUntil, within } from "../helpers/net.ts";

const DELIVERY_TIMEOUT_MS = 15_000;
/** Restart case: messages acknowledged before the restart, and at least as many after it. */
const RESTART_AFTER_ACKED = 100;
const PUBLISH_BATCH = 10;
const ONE_MIB = 1024 * 1024;
/**
 * Queue-group names the cases use, per broker and run: a rabbitmq queue and a kafka consumer group
 * are named after the group alone (go-micro's names), and other runs share the servers. Durable
 * objects on shared servers are removed afterwards.
 */
const RUN = randomUUID().slice(0, 8);
const queueNames = (setup: string) => ({
  workers: `workers-${setup}-${RUN}`,
  twoTopics: `two-topics-${setup}-${RUN}`,
  retry: `retry-${setup}-${RUN}`,
  restart: `restart-${setup}-${RUN}`,
});
/** The Pub/Sub emulator's project the cases use (it takes any). */
const PUBSUB_PROJECT = "tsmicro-conformance";

interface BrokerSetup {
  name: string;
  /** Creates an unconnected broker; `address` is an own server's host:port (else the shared one). */
  create(address?: string): Promise<Broker>;
  /** Why it cannot run here, or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /** CI starts the shared server, so under CI=true it must be usable. */
  ciProvides: boolean;
  /** Topics the engine refuses (with a clear error); none for brokers that accept any string. */
  invalidTopics: string[];
  /** Further messages the engine refuses, besides bad headers and bodies. */
  invalidMessages?: Array<{ why: string; message: Message; error: RegExp }>;
  /** The large body of the byte-exact case (default 1 MiB). */
  largeBody?: number;
  /** Queue subscriptions get a message again when the handler throws. */
  redeliversFailed: boolean;
  /** Queue subscriptions keep every acknowledged publish across a server restart. */
  atLeastOnce: boolean;
  /** Subscribers without a queue keep every acknowledged publish across a server restart too. */
  fanOutAtLeastOnce?: boolean;
  /** publish() needs no connect(): go-micro's http broker posts to the subscribers the registry names. */
  publishesUnconnected?: boolean;
  /** Starts a server of the test's own, for the restart case. */
  ownServer?: { start: () => Promise<OwnServer>; command: string };
  /** Removes what the cases left on the shared server (durable queues, streams). */
  cleanup?(topics: string[], queues: string[]): Promise<void>;
}

const listening = (port: number, what: string, setup = "brokers") => async () =>
  (await canConnect(port)) ? undefined : `${what} is not listening on 127.0.0.1:${port} (source .ci/setup/${setup}.sh)`;
const always = async () => undefined;
/** Rejected by every network broker. */
const COMMON_INVALID_TOPICS = ["", "has space"];

function networkBroker<O extends BrokerOptions>(scheme: string, defaultAddress: string, opts?: O) {
  return (address = defaultAddress) => createBroker(`${scheme}://${address}`, opts);
}

const natsSetup = (name: string, opts: NatsBrokerOptions, atLeastOnce: boolean): BrokerSetup => ({
  name,
  create: networkBroker("nats", "127.0.0.1:4222", opts),
  unavailable: listening(4222, "NATS"),
  ciProvides: true,
  // Wildcards are refused where they cannot work: anywhere in JetStream mode, mid-subject for '>'.
  invalidTopics: [...COMMON_INVALID_TOPICS, "a..b", ".leading", "trailing.", "a.>.b", ...(atLeastOnce ? ["wild.*"] : [])],
  invalidMessages: [
    // The server's max_payload (1 MiB by default) bounds body plus headers.
    { why: "larger than max_payload", message: { header: {}, body: new Uint8Array(2 * ONE_MIB) }, error: /max_payload/ },
  ],
  // Core NATS carries go-micro's JSON envelope, whose base64 body (4/3 of it) must fit max_payload.
  largeBody: atLeastOnce ? undefined : 700 * 1024,
  redeliversFailed: atLeastOnce,
  atLeastOnce,
  ownServer: { start: startNats, command: "nats-server" },
  cleanup: atLeastOnce ? deleteJetStreamStreams : undefined,
});

const mqttSetup = (name: string, opts: MqttBrokerOptions, durable: boolean): BrokerSetup => ({
  name,
  create: networkBroker("mqtt", "127.0.0.1:1883", opts),
  unavailable: listening(1883, "Mosquitto"),
  ciProvides: true,
  invalidTopics: [...COMMON_INVALID_TOPICS, "x".repeat(70_000)],
  redeliversFailed: false, // MQTT has no negative acknowledgement
  // Mosquitto 2.0 restores persistent sessions' plain subscriptions from disk but not their shared
  // ones ($share: queue groups), so what is published before a group's members subscribe again is lost.
  atLeastOnce: false,
  fanOutAtLeastOnce: durable,
  ownServer: { start: startMosquitto, command: "mosquitto" },
});

/** go-micro's queue declaration (not durable, auto-deleted) by default; durableQueues keeps groups' messages across a restart. */
const rabbitSetup = (name: string, opts: RabbitMQBrokerOptions, durable: boolean): BrokerSetup => ({
  name,
  create: networkBroker("amqp", "127.0.0.1:5672", opts),
  unavailable: listening(5672, "RabbitMQ"),
  ciProvides: true,
  invalidTopics: [...COMMON_INVALID_TOPICS, "x".repeat(256), "a.*.b", "a.#"],
  redeliversFailed: true,
  atLeastOnce: durable,
  ownServer: { start: startRabbitMQ, command: RABBITMQ_SERVER_SCRIPT },
  cleanup: durable ? deleteRabbitQueues : undefined,
});

const redisSetup = (name: string, opts: RedisBrokerOptions): BrokerSetup => ({
  name,
  create: networkBroker("redis", "127.0.0.1:6379", opts),
  unavailable: listening(6379, "Redis"),
  ciProvides: true,
  invalidTopics: COMMON_INVALID_TOPICS,
  redeliversFailed: true,
  atLeastOnce: true, // queue groups read streams in both modes
  fanOutAtLeastOnce: !!opts.streams, // in streams mode every subscriber reads the stream through a group of its own
  ownServer: { start: startRedis, command: "redis-server" },
  cleanup: deleteRedisStreams,
});

/** The shared Kafka: .ci/setup/kafka.sh's, or the servers KAFKA_BROKERS names (host:port,…). */
const KAFKA_ADDRESSES = process.env.KAFKA_BROKERS ?? "127.0.0.1:9092";

const setups: BrokerSetup[] = [
  {
    name: "memory",
    create: () => createBroker("memory"),
    unavailable: always,
    ciProvides: true,
    invalidTopics: COMMON_INVALID_TOPICS,
    redeliversFailed: false,
    atLeastOnce: false,
  },
  {
    name: "http",
    // Subscribers find each other through the registry; memory registries share one store per process.
    create: () => createBroker("http", { registry: new MemoryRegistry() }),
    unavailable: always,
    ciProvides: true,
    invalidTopics: COMMON_INVALID_TOPICS,
    redeliversFailed: true, // publish() tries a failed delivery again (up to 3 attempts)
    atLeastOnce: false,
    publishesUnconnected: true,
  },
  natsSetup("nats", {}, false),
  natsSetup("nats-jetstream", { jetstream: true }, true),
  mqttSetup("mqtt", {}, false),
  mqttSetup("mqtt-durable", { durable: true }, true),
  // Not go-micro's wire: dots as topic levels, the raw body with headers as MQTT 5 user properties.
  mqttSetup("mqtt-levels", { topicLevels: true, envelope: false }, false),
  rabbitSetup("rabbitmq", {}, false),
  rabbitSetup("rabbitmq-durable", { durableQueues: true }, true),
  redisSetup("redis", {}),
  redisSetup("redis-streams", { streams: true }),
  {
    name: "nsq",
    create: networkBroker("nsq", "127.0.0.1:4150"),
    unavailable: listening(4150, "nsqd", "nsq"),
    ciProvides: true,
    invalidTopics: [...COMMON_INVALID_TOPICS, "a/b", "x".repeat(65), "a#b", "ü"],
    invalidMessages: [
      // nsqd's --max-msg-size (4 MiB on the suite's servers) bounds the envelope of headers and body; the broker asks for it.
      { why: "larger than --max-msg-size", message: { header: {}, body: new Uint8Array(5 * ONE_MIB) }, error: /larger than the --max-msg-size/ },
    ],
    redeliversFailed: true,
    // Queue groups are NSQ channels, which a graceful restart writes to disk with what they hold.
    atLeastOnce: true,
    ownServer: { start: startNsqd, command: NSQD },
    cleanup: deleteNsqTopics,
  },
  {
    name: "googlepubsub",
    create: networkBroker<GooglePubSubBrokerOptions>("googlepubsub", "127.0.0.1:8085", { projectId: PUBSUB_PROJECT }),
    unavailable: listening(8085, "The Pub/Sub emulator", "pubsub"),
    ciProvides: true,
    // Too short, not starting with a letter, reserved prefix, a slash, too long.
    invalidTopics: [...COMMON_INVALID_TOPICS, "ab", "1abc", "goog.x", "a/b", "x".repeat(256)],
    invalidMessages: [
      { why: "no body and no header", message: { header: {}, body: new Uint8Array(0) }, error: /needs a body or at least one header/ },
      { why: "larger than 10 MB", message: { header: { id: "big" }, body: new Uint8Array(10_000_000) }, error: /limit of 10 MB/ },
    ],
    redeliversFailed: true,
    atLeastOnce: false, // the emulator keeps its state in memory: a restart loses topics, subscriptions and messages
    ownServer: { start: startPubSubEmulator, command: PUBSUB_EMULATOR },
    cleanup: deletePubSubObjects,
  },
  {
    name: "kafka",
    create: networkBroker("kafka", KAFKA_ADDRESSES),
    unavailable: process.env.KAFKA_BROKERS ? always : listening(9092, "Kafka", "kafka"),
    ciProvides: true,
    invalidTopics: [...COMMON_INVALID_TOPICS, "a/b", "x".repeat(250)],
    invalidMessages: [
      // .ci/setup/kafka.sh's server takes up to 4 MiB (message.max.bytes; Kafka's default is 1 MB).
      { why: "larger than message.max.bytes", message: { header: {}, body: new Uint8Array(5 * ONE_MIB) }, error: /message\.max\.bytes/ },
    ],
    redeliversFailed: true,
    atLeastOnce: true, // queue groups commit a record's offset once its handler succeeded
    ownServer: { start: startKafka, command: KAFKA_SERVER },
    cleanup: deleteKafkaTopics,
  },
];

/** Collects deliveries; waits for a condition on them to hold. */
class Inbox {
  readonly events: Event[] = [];
  private readonly waiters = new Set<() => void>();

  readonly handler = (event: Event): void => {
    this.events.push(event);
    for (const check of [...this.waiters]) check();
  };

  ids(): string[] {
    return this.events.map((e) => e.message.header.id ?? "");
  }

  has(id: string): boolean {
    return this.events.some((e) => e.message.header.id === id);
  }

  async until(cond: () => boolean, what: string, timeoutMs = DELIVERY_TIMEOUT_MS): Promise<void> {
    let check = () => {};
    try {
      await within(
        new Promise<void>((resolve) => {
          check = () => cond() && resolve();
          this.waiters.add(check);
          check();
        }),
        timeoutMs,
        what,
      );
    } finally {
      this.waiters.delete(check);
    }
  }
}

const message = (id: string, body = `message ${id}`): Message => ({ header: { id }, body: Buffer.from(body) });
const range = (n: number) => Array.from({ length: n }, (_, i) => String(i));
const sorted = (ids: string[]) => [...ids].sort((a, b) => Number(a) - Number(b));

/** One row per broker restart case: what a restart of the engine cost. */
interface LossRow {
  broker: string;
  published: number;
  acknowledged: number;
  /** Distinct acknowledged-or-not messages the queue group received. */
  received: number;
  /** Acknowledged but never received by the queue group. */
  lost: number;
  /** Deliveries beyond the first of a message. */
  duplicated: number;
  /** Acknowledged but never received by the subscriber without a queue. */
  fanOutLost: number;
  guarantee: string;
}
const lossTable: LossRow[] = [];

function guarantee(setup: BrokerSetup): string {
  if (setup.atLeastOnce && setup.fanOutAtLeastOnce) return "at least once: all";
  if (setup.atLeastOnce) return "at least once: groups";
  if (setup.fanOutAtLeastOnce) return "at least once: fan-out";
  return "at most once";
}

function printLossTable(): void {
  if (!lossTable.length) return;
  const header = ["broker", "guarantee", "published", "acknowledged", "received", "lost", "duplicated", "fan-out lost"];
  const rows = [...lossTable]
    .sort((a, b) => a.broker.localeCompare(b.broker))
    .map((r) => [r.broker, r.guarantee, r.published, r.acknowledged, r.received, r.lost, r.duplicated, r.fanOutLost].map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  console.log(
    ["LOSS TABLE: a server restart mid-stream, queue group of one subscriber", line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n"),
  );
}

describe("broker conformance", { concurrency: true }, () => {
  after(printLossTable);
  for (const setup of setups) {
    describe(`${setup.name} broker`, { concurrency: 1 }, () => {
      const topics: string[] = [];
      const topicFor = (slug: string) => {
        const topic = `tsmicro.test.${setup.name}.${slug}.${randomUUID().slice(0, 8)}`;
        topics.push(topic);
        return topic;
      };
      let availability: Promise<string | undefined> | undefined;
      /** Skips (or under CI fails) a case whose server is missing; true when skipped. */
      const skipped = async (t: TestContext) => {
        const reason = await (availability ??= setup.unavailable());
        if (!reason) return false;
        skipOrFail(t, `${setup.name}: ${reason}`, setup.ciProvides);
        return true;
      };
      const connect = async (t: TestContext, count: number, address?: string): Promise<Broker[]> => {
        const brokers: Broker[] = [];
        t.after(() => Promise.all(brokers.map((b) => b.disconnect().catch(() => {}))));
        for (let i = 0; i < count; i++) {
          const broker = await setup.create(address);
          brokers.push(broker);
          await broker.connect();
        }
        return brokers;
      };
      const queue = queueNames(setup.name);
      after(() => setup.cleanup?.(topics, Object.values(queue)));

      it(`${setup.name}: fan-out delivers every message to each of 3 subscribers`, async (t) => {
        if (await skipped(t)) return;
        const [first, second, publisher] = await connect(t, 3);
        const topic = topicFor("fanout");
        const inboxes = [new Inbox(), new Inbox(), new Inbox()];
        // Two subscribers share one broker (one connection), the third has its own.
        await first!.subscribe(topic, inboxes[0]!.handler);
        await first!.subscribe(topic, inboxes[1]!.handler);
        await second!.subscribe(topic, inboxes[2]!.handler);
        for (const id of range(5)) await publisher!.publish(topic, message(id));
        for (const [i, inbox] of inboxes.entries()) {
          await inbox.until(() => inbox.events.length >= 5, `subscriber ${i + 1} to get 5 messages`);
          assert.deepEqual(sorted(inbox.ids()), range(5), `subscriber ${i + 1}`);
          assert.ok(inbox.events.every((e) => e.topic === topic), "event.topic is the topic published to");
        }
      });

      it(`${setup.name}: a queue group of 3 gets each message exactly once`, async (t) => {
        if (await skipped(t)) return;
        const [first, second, publisher] = await connect(t, 3);
        const topic = topicFor("queue");
        const group = new Inbox();
        const control = new Inbox();
        await first!.subscribe(topic, group.handler, { queue: queue.workers });
        await first!.subscribe(topic, group.handler, { queue: queue.workers });
        await second!.subscribe(topic, group.handler, { queue: queue.workers });
        await publisher!.subscribe(topic, control.handler);
        for (const id of range(30)) await publisher!.publish(topic, message(id));
        await control.until(() => control.events.length >= 30, "the control subscriber to get all 30");
        await group.until(() => new Set(group.ids()).size >= 30, "the group to get all 30");
        assert.deepEqual(sorted(group.ids()), range(30), "each message once in the group, none twice");
      });

      it(`${setup.name}: one queue group name on two topics gets each topic's messages once, to that topic's subscribers only`, async (t) => {
        if (await skipped(t)) return;
        const [first, second, publisher] = await connect(t, 3);
        const topics = [topicFor("group-a"), topicFor("group-b")];
        const inboxes = [new Inbox(), new Inbox()];
        // go-micro names a rabbitmq queue and a Pub/Sub subscription after the group alone: one group on two topics shares them.
        for (const broker of [first!, second!]) for (const i of [0, 1]) await broker.subscribe(topics[i]!, inboxes[i]!.handler, { queue: queue.twoTopics });
        for (const id of range(10)) for (const i of [0, 1]) await publisher!.publish(topics[i]!, message(`${i}-${id}`));
        for (const i of [0, 1]) {
          const inbox = inboxes[i]!;
          await inbox.until(() => new Set(inbox.ids()).size >= 10, `the group on topic ${i} to get its 10`);
          assert.ok(inbox.events.every((e) => e.topic === topics[i]), `topic ${i}'s subscribers got only its messages`);
          assert.deepEqual([...inbox.ids()].sort(), range(10).map((id) => `${i}-${id}`).sort(), `each of topic ${i}'s messages once`);
        }
      });

      it(`${setup.name}: headers and binary bodies arrive byte-exact (empty, every byte value, ${setup.largeBody ? `${Math.round(setup.largeBody / 1024)} KiB` : "1 MiB"})`, async (t) => {
        if (await skipped(t)) return;
        const [subscriber, publisher] = await connect(t, 2);
        const topic = topicFor("bytes");
        const inbox = new Inbox();
        await subscriber!.subscribe(topic, inbox.handler);
        const everyByte = Uint8Array.from({ length: 256 }, (_, i) => i);
        const sent: Message[] = [
          {
            header: {
              id: "rich",
              name: "davie",
              "Content-Type": "application/x-protobuf",
              "Micro-From-Service": "student_service",
              classes: "软件工程专业 ✓",
              empty: "",
              inner: "a  b  c",
              long: "x".repeat(2_000),
            },
            body: everyByte,
          },
          { header: { id: "empty" }, body: new Uint8Array(0) },
          // No header: NATS's default max_payload (1 MiB) counts headers too. Told apart by length.
          { header: {}, body: randomBytes(setup.largeBody ?? ONE_MIB) },
          { header: {}, body: Uint8Array.of(0, 0xff, 0) },
        ];
        const key = (m: Message) => m.header.id ?? `length ${m.body.length}`;
        for (const m of sent) await publisher!.publish(topic, m);
        await inbox.until(() => inbox.events.length >= sent.length, `all ${sent.length} messages`, 30_000);
        for (const expected of sent) {
          const got = inbox.events.find((e) => key(e.message) === key(expected));
          assert.ok(got, `message ${key(expected)} arrived`);
          assert.deepEqual(got.message.header, expected.header, `headers of ${key(expected)}`);
          assert.ok(got.message.body instanceof Uint8Array, "body is a Uint8Array");
          assert.ok(Buffer.from(got.message.body).equals(Buffer.from(expected.body)), `body of ${key(expected)} (${expected.body.length} bytes)`);
        }
      });

      it(`${setup.name}: unsubscribe stops delivery, and only to that subscriber`, async (t) => {
        if (await skipped(t)) return;
        const [subscriber, publisher] = await connect(t, 2);
        const topic = topicFor("unsubscribe");
        const leaving = new Inbox();
        const control = new Inbox(); // same broker, same topic: must keep receiving
        const subscription = await subscriber!.subscribe(topic, leaving.handler);
        await subscriber!.subscribe(topic, control.handler);
        await publisher!.publish(topic, message("0"));
        await leaving.until(() => leaving.has("0"), "the first message");
        await subscription.unsubscribe();
        await publisher!.publish(topic, message("1"));
        await publisher!.publish(topic, message("marker"));
        await control.until(() => control.has("marker"), "the marker on the control subscriber");
        assert.deepEqual(control.ids(), ["0", "1", "marker"]);
        assert.deepEqual(leaving.ids(), ["0"], "nothing after unsubscribe");
      });

      it(`${setup.name}: publish with no subscriber succeeds, and a later subscriber gets only later messages`, async (t) => {
        if (await skipped(t)) return;
        const [subscriber, publisher] = await connect(t, 2);
        const topic = topicFor("nobody");
        await within(publisher!.publish(topic, message("early")), DELIVERY_TIMEOUT_MS, "publish to a topic nobody subscribed to");
        const inbox = new Inbox();
        await subscriber!.subscribe(topic, inbox.handler);
        await publisher!.publish(topic, message("late"));
        await inbox.until(() => inbox.has("late"), "the message published after subscribing");
        assert.deepEqual(inbox.ids(), ["late"]);
      });

      it(`${setup.name}: messages published right before disconnect() are delivered, and their publishes resolve`, async (t) => {
        if (await skipped(t)) return;
        const [subscriber, publisher] = await connect(t, 2);
        const topic = topicFor("disconnect");
        const inbox = new Inbox();
        await subscriber!.subscribe(topic, inbox.handler);
        const ids = range(20);
        // disconnect() in the same turn as the publishes, none awaited: they may still be buffered
        // (NATS's outbox) or awaiting the server's confirmation (JetStream, RabbitMQ, NSQ, Kafka).
        const published = ids.map((id) => publisher!.publish(topic, message(id)));
        const disconnected = publisher!.disconnect();
        if (!setup.publishesUnconnected)
          await assert.rejects(publisher!.publish(topic, message("late")), { message: new RegExp(`^${publisher!.toString()} broker: not connected`) }, "a publish after disconnect()");
        await within(Promise.all([...published, disconnected]), DELIVERY_TIMEOUT_MS, "the publishes and disconnect() to resolve");
        await inbox.until(() => inbox.events.length >= ids.length, `all ${ids.length} messages`);
        assert.deepEqual(sorted(inbox.ids()), ids);
      });

      it(`${setup.name}: bad topics, headers and bodies fail clearly, and nothing is lost`, async (t) => {
        if (await skipped(t)) return;
        const [subscriber, publisher] = await connect(t, 2);
        const topic = topicFor("bad-input");
        const inbox = new Inbox();
        await subscriber!.subscribe(topic, inbox.handler);
        await publisher!.publish(topic, message("before"));
        const refused = (what: RegExp) => (err: Error) => {
          assert.match(err.message, new RegExp(`^${publisher!.toString()} broker: `), "the error names the broker");
          assert.match(err.message, what);
          return true;
        };
        for (const bad of setup.invalidTopics) {
          await assert.rejects(publisher!.publish(bad, message("bad")), refused(/invalid topic/), `publish to ${bad.slice(0, 20)}`);
          await assert.rejects(subscriber!.subscribe(bad, inbox.handler), refused(/invalid topic/), `subscribe to ${bad.slice(0, 20)}`);
        }
        const badMessages = [
          { why: "header key with a space", message: { header: { "bad key": "v" }, body: new Uint8Array(1) }, error: /invalid header key/ },
          { why: "header value with a newline", message: { header: { k: "a\nb" }, body: new Uint8Array(1) }, error: /invalid value of header k/ },
          { why: "header value with a tab", message: { header: { k: "a\tb" }, body: new Uint8Array(1) }, error: /invalid value of header k/ },
          { why: "string body", message: { header: {}, body: "text" as unknown as Uint8Array }, error: /body must be a Uint8Array/ },
          ...(setup.invalidMessages ?? []),
        ];
        for (const bad of badMessages) await assert.rejects(publisher!.publish(topic, bad.message), refused(bad.error), bad.why);
        await publisher!.publish(topic, message("after"));
        await inbox.until(() => inbox.has("after"), "the message after the refused ones");
        assert.deepEqual(inbox.ids(), ["before", "after"], "both good messages, nothing refused");
      });

      if (!setup.redeliversFailed)
        it(`${setup.name}: a handler that throws does not get the message again (at most once)`, async (t) => {
          if (await skipped(t)) return;
          const [subscriber, publisher] = await connect(t, 2);
          const topic = topicFor("no-retry");
          const attempts = new Map<string, number>();
          const handled = new Inbox();
          await subscriber!.subscribe(
            topic,
            (event) => {
              const id = event.message.header.id!;
              attempts.set(id, (attempts.get(id) ?? 0) + 1);
              if (id !== "marker") throw new Error(`delivery of ${id} fails on purpose`);
              handled.handler(event);
            },
            { queue: queue.retry },
          );
          // The http broker reports the handler's failure to the publisher; the others cannot.
          for (const id of range(3)) await publisher!.publish(topic, message(id)).catch(() => {});
          await publisher!.publish(topic, message("marker"));
          await handled.until(() => handled.has("marker"), "the marker after the failing messages");
          assert.deepEqual(Object.fromEntries(attempts), { "0": 1, "1": 1, "2": 1, marker: 1 }, "each message delivered once");
        });

      if (setup.redeliversFailed)
        it(`${setup.name}: a handler that throws gets the message again`, async (t) => {
          if (await skipped(t)) return;
          const [subscriber, publisher] = await connect(t, 2);
          const topic = topicFor("retry");
          const attempts = new Map<string, number>();
          const handled = new Inbox();
          await subscriber!.subscribe(
            topic,
            async (event) => {
              const id = event.message.header.id!;
              attempts.set(id, (attempts.get(id) ?? 0) + 1);
              if (attempts.get(id) === 1) throw new Error(`first delivery of ${id} fails on purpose`);
              await event.ack();
              handled.handler(event);
            },
            { queue: queue.retry, autoAck: false },
          );
          for (const id of range(3)) await publisher!.publish(topic, message(id));
          await handled.until(() => new Set(handled.ids()).size === 3, "all 3 messages handled after failing once", 30_000);
          for (const id of range(3)) assert.ok(attempts.get(id)! >= 2, `message ${id} delivered again (attempts: ${attempts.get(id)})`);
        });

      const restartCase = setup.atLeastOnce
        ? "a server restart mid-stream loses no acknowledged message, and subscribers resume by themselves"
        : setup.fanOutAtLeastOnce
        ? "a server restart mid-stream loses no acknowledged message to a subscriber without a queue, and subscribers resume by themselves"
        : "subscribers resume by themselves after a server restart";
      const ownServer = setup.ownServer; // in-process brokers have no server to restart
      if (ownServer)
        it(`${setup.name}: ${restartCase}`, { timeout: 120_000 }, async (t) => {
          if (!isInstalled(ownServer.command)) return void skipOrFail(t, `${ownServer.command} is not installed`, setup.ciProvides);
          const server = await ownServer.start();
          let brokers: Broker[];
          try {
            brokers = await connect(t, 2, server.address);
          } finally {
            t.after(() => server.stop()); // after hooks run in order: brokers disconnect first
          }
          const [subscriber, publisher] = brokers;
          const topic = topicFor("restart");
          const group = new Inbox();
          const fanout = new Inbox();
          await subscriber!.subscribe(topic, group.handler, { queue: queue.restart });
          await subscriber!.subscribe(topic, fanout.handler);

          const acked: string[] = [];
          const ackedAfterRestart: string[] = [];
          let published = 0;
          let restart: Promise<void> | undefined;
          let restarted = false;
          const publishNext = async () => {
            const id = String(published++);
            try {
              await publisher!.publish(topic, message(id));
              acked.push(id);
              if (restarted) ackedAfterRestart.push(id);
            } catch {
              // Not acknowledged while the server is away: the publisher would retry; it may still arrive.
            }
          };
          // Publish in batches, so messages are in flight when the server goes; the restart starts after
          // RESTART_AFTER_ACKED acks and the stream goes on meanwhile.
          const deadline = Date.now() + 60_000;
          while ((!restarted || ackedAfterRestart.length < RESTART_AFTER_ACKED) && Date.now() < deadline) {
            await Promise.all(Array.from({ length: PUBLISH_BATCH }, publishNext));
            if (!restart && acked.length >= RESTART_AFTER_ACKED) restart = server.restart().then(() => void (restarted = true));
            await new Promise(setImmediate); // a publish may resolve without I/O (NATS buffers): let the restart proceed
          }
          await restart;
          assert.ok(ackedAfterRestart.length >= RESTART_AFTER_ACKED, `publishing resumed after the restart (${ackedAfterRestart.length} acked)`);
          // Both subscriptions are back: keep publishing until each has something published after the restart.
          const resumed = (inbox: Inbox) => ackedAfterRestart.some((id) => inbox.has(id));
          await waitUntil(
            async () => {
              if (resumed(group) && resumed(fanout)) return true;
              await publishNext();
              return false;
            },
            30_000,
            "both subscriptions to receive after the restart",
            200,
          );

          if (setup.atLeastOnce)
            await group.until(() => acked.every((id) => group.has(id)), "every acknowledged message in the queue group", 60_000).catch(() => {});
          // Where fan-out is not at-least-once, a few seconds tell a loss from a subscriber still catching up.
          const fanOutWait = setup.fanOutAtLeastOnce ? 60_000 : 5_000;
          await fanout.until(() => acked.every((id) => fanout.has(id)), "every acknowledged message at the fan-out subscriber", fanOutWait).catch(() => {});
          const received = new Set(group.ids());
          const lost = acked.filter((id) => !received.has(id));
          const fanOutLost = acked.filter((id) => !fanout.has(id));
          t.diagnostic(
            `${setup.name} restart: ${published} published, ${acked.length} acknowledged (${published - acked.length} failed while the server was away), ` +
              `queue group received ${received.size} distinct (${group.events.length - received.size} redelivered), ` +
              `${lost.length} acknowledged lost${setup.atLeastOnce ? "" : " (at-most-once: allowed)"}; fan-out received ${new Set(fanout.ids()).size}`,
          );
          lossTable.push({
            broker: setup.name,
            guarantee: guarantee(setup),
            published,
            acknowledged: acked.length,
            received: received.size,
            lost: lost.length,
            duplicated: group.events.length - received.size,
            fanOutLost: fanOutLost.length,
          });
          if (setup.atLeastOnce) assert.deepEqual(lost, [], "acknowledged messages lost");
          if (setup.fanOutAtLeastOnce) assert.deepEqual(fanOutLost, [], "acknowledged messages lost by the fan-out subscriber");
        });
    });
  }
});

async function deleteRabbitQueues(_topics: string[], queues: string[]): Promise<void> {
  const amqp = await import("amqplib");
  const connection = await amqp.connect("amqp://127.0.0.1:5672");
  try {
    const channel = await connection.createChannel();
    for (const queue of queues) await channel.deleteQueue(queue);
  } finally {
    await connection.close();
  }
}

async function deleteRedisStreams(topics: string[]): Promise<void> {
  const { createClient } = await import("redis");
  const client = createClient({ url: "redis://127.0.0.1:6379" });
  await client.connect();
  try {
    if (topics.length) await client.del(topics.map(streamKey));
  } finally {
    client.destroy();
  }
}

async function deleteKafkaTopics(topics: string[]): Promise<void> {
  const { Admin } = await import("@platformatic/kafka");
  const admin = new Admin({ clientId: "tsmicro-test-cleanup", bootstrapBrokers: KAFKA_ADDRESSES.split(",") });
  try {
    // The restart case's topic lives on the test's own server.
    const existing = new Set(await admin.listTopics());
    const ours = topics.filter((topic) => existing.has(topic));
    if (ours.length) await admin.deleteTopics({ topics: ours });
  } finally {
    await admin.close();
  }
}

async function deleteJetStreamStreams(topics: string[]): Promise<void> {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstreamManager } = await import("@nats-io/jetstream");
  const connection = await connect({ servers: "127.0.0.1:4222" });
  try {
    const manager = await jetstreamManager(connection);
    for (const topic of topics) {
      const stream = await manager.streams.find(topic).catch(() => undefined);
      if (stream) await manager.streams.delete(stream);
    }
  } finally {
    await connection.close();
  }
}

async function deleteNsqTopics(topics: string[]): Promise<void> {
  for (const topic of topics) {
    const response = await fetch(`http://127.0.0.1:4151/topic/delete?topic=${encodeURIComponent(topic)}`, {
      method: "POST",
      signal: AbortSignal.timeout(5_000),
    });
    // Topics of skipped or refused cases were never created.
    if (!response.ok && response.status !== 404) throw new Error(`nsqd: deleting topic ${topic}: ${response.status} ${await response.text()}`);
  }
}

/** The queue groups' subscriptions and the topics on the shared emulator (subscribers' own subscriptions go when they do). */
async function deletePubSubObjects(topics: string[], queues: string[]): Promise<void> {
  const { PubSub } = await import("@google-cloud/pubsub");
  const client = new PubSub({ projectId: PUBSUB_PROJECT, apiEndpoint: "127.0.0.1:8085", emulatorMode: true, universeDomain: "googleapis.com" });
  const gone = (err: { code?: number }) => {
    if (err.code !== 5) throw err; // NOT_FOUND: never created
  };
  try {
    // A group's subscription is named after the group, or after group and topic where the group's belonged to another topic.
    for (const queue of queues) await client.subscription(subscriptionName(queue)).delete().catch(gone);
    for (const topic of topics) {
      for (const queue of queues) await client.subscription(subscriptionName(`${queue}:${topic}`)).delete().catch(gone);
      await client.topic(topic).delete().catch(gone);
    }
  } finally {
    await client.close();
  }
}
