/**
 * Events between tsmicro and real go-micro (v4.11 with plugins v4, v5) on brokers both share: a Go
 * publisher → a tsmicro subscriber and a tsmicro publisher → a Go subscriber, headers and body
 * byte-identical (raw broker messages), typed Student events with JSON and protobuf bodies, and a
 * queue group with members in both languages that gets each message exactly once.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createBroker, createRegistry, type Broker, type BrokerEvent as Event, type Registry } from "../../src/index.ts";
import { create } from "@bufbuild/protobuf";
import { publishEvent, subscribeEvent } from "../../src/events.ts";
import type { RabbitMQBrokerOptions } from "../../src/broker/rabbitmq.ts";
import { StudentSchema } from "../../examples/student/gen/student_pb.ts";
import { ETCD_FOR_GO, GO_MICRO_VERSIONS, cell, runPeer, startPeer, type GoMicroVersion, type Peer } from "./peers.ts";

const DAVIE = { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" };
/** Every byte value, then text: what travels must arrive unchanged. */
const BODY = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from("软件工程专业")]);
const HEADER = { name: "davie", "X-Trace-Id": "4bf92f3577b34da6", empty: "" };

/** A broker both sides share: how tsmicro names it, go-micro's settings, what the Go side adds to headers. */
interface SharedBroker {
  row: string;
  tsmicro: string;
  goMicro: Record<string, string>;
  /** Headers a go-micro subscriber sees besides the published ones (go-micro's http broker adds the topic). */
  goAddsHeader: (topic: string) => Record<string, string>;
  /** Milliseconds the Go publisher waits after publishing (go-micro's http broker delivers in the background). */
  goLingerMs: number;
  /** The registry the broker finds subscribers in (http). */
  registry?: string;
  /** go-micro versions that have this broker (default all). */
  versions?: GoMicroVersion[];
  /** Why a queue group cannot be shared with go-micro's broker, when it cannot. */
  noSharedQueue?: string;
  /** Prepares the engine for a queue group shared with a go-micro subscriber; returns its cleanup. */
  sharedQueueSetup?: (topic: string) => Promise<() => Promise<void>>;
}

const BROKERS: SharedBroker[] = [
  {
    row: "http broker (etcd)",
    tsmicro: "http",
    registry: "etcd://127.0.0.1:2379",
    goMicro: { ...ETCD_FOR_GO, MICRO_BROKER: "http", MICRO_BROKER_ADDRESS: "127.0.0.1:0" },
    goAddsHeader: (topic) => ({ "Micro-Topic": topic }),
    goLingerMs: 1500,
  },
  {
    row: "nats broker",
    tsmicro: "nats://127.0.0.1:4222",
    goMicro: { MICRO_BROKER: "nats", MICRO_BROKER_ADDRESS: "127.0.0.1:4222" },
    goAddsHeader: () => ({}),
    // go-micro's nats broker closes without flushing: the publisher lets its client flush first.
    goLingerMs: 300,
  },
  {
    row: "rabbitmq broker",
    tsmicro: "amqp://guest:guest@127.0.0.1:5672",
    goMicro: { MICRO_BROKER: "rabbitmq", MICRO_BROKER_ADDRESS: "amqp://guest:guest@127.0.0.1:5672" },
    // go-micro's rabbitmq subscriber adds the routing key as Micro-Topic.
    goAddsHeader: (topic) => ({ "Micro-Topic": topic }),
    goLingerMs: 300,
  },
  {
    row: "mqtt broker",
    tsmicro: "mqtt://127.0.0.1:1883",
    goMicro: { MICRO_BROKER: "mqtt", MICRO_BROKER_ADDRESS: "tcp://127.0.0.1:1883" },
    goAddsHeader: () => ({}),
    // go-micro's mqtt Publish returns before the server has the message: the publisher waits for it.
    goLingerMs: 500,
    versions: ["v4"],
    noSharedQueue: "go-micro's mqtt broker ignores queue groups (a plain subscription)",
  },
  {
    row: "redis broker",
    tsmicro: "redis://127.0.0.1:6379",
    // The v4 plugin checks the redis:// prefix the wrong way round: a bare host:port works.
    goMicro: { MICRO_BROKER: "redis", MICRO_BROKER_ADDRESS: "127.0.0.1:6379" },
    goAddsHeader: () => ({}),
    goLingerMs: 0,
    versions: ["v4"],
    noSharedQueue: "go-micro's redis broker ignores queue groups (plain pub/sub)",
  },
  {
    row: "kafka broker",
    tsmicro: "kafka://127.0.0.1:9092",
    goMicro: { MICRO_BROKER: "kafka", MICRO_BROKER_ADDRESS: "127.0.0.1:9092" },
    // go-micro's kafka subscriber adds the topic, and a JSON Content-Type where there is none.
    goAddsHeader: (topic) => ({ "Micro-Topic": topic, "Content-Type": "application/json" }),
    goLingerMs: 0,
    versions: ["v4"],
    // A consumer group shares a topic by partitions: an auto-created topic would have one.
    sharedQueueSetup: createKafkaTopic,
  },
];

const uniqueTopic = (what: string) => `interop.${what}.${randomUUID().slice(0, 8)}`;

/**
 * Publishes the raw message until the Go subscriber prints one (bounded): some Go subscribers
 * (Kafka consumer groups) are still joining when they report ready, and miss what comes first.
 */
async function publishUntilHeard(peer: Peer, publish: () => Promise<void>, key = "body") {
  for (let attempt = 1; ; attempt++) {
    await publish();
    try {
      return await peer.next((l) => key in l, 2_000, "message");
    } catch (err) {
      if (attempt >= 10) throw err;
    }
  }
}

/** Collects a tsmicro subscription's events; waits for a count. */
class Inbox {
  readonly events: Event[] = [];
  private waiters: (() => void)[] = [];
  readonly handler = async (event: Event) => {
    this.events.push(event);
    for (const w of this.waiters.splice(0)) w();
  };
  async atLeast(count: number, timeoutMs = 10_000): Promise<Event[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.events.length < count) {
      if (Date.now() >= deadline) assert.fail(`${this.events.length} of ${count} events within ${timeoutMs}ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.events;
  }
}

for (const shared of BROKERS) {
  for (const version of shared.versions ?? GO_MICRO_VERSIONS) {
    describe(`${shared.row} · ${version}`, () => {
      let registry: Registry | undefined;
      let broker: Broker;
      before(async () => {
        registry = shared.registry ? await createRegistry(shared.registry) : undefined;
        broker = await createBroker(shared.tsmicro, { registry, addresses: shared.tsmicro === "http" ? ["127.0.0.1:0"] : undefined });
        await broker.connect();
      });
      after(async () => {
        await broker.disconnect();
        await registry?.close?.();
      });

      const goPublish = (topic: string, env: Record<string, string>) =>
        runPeer(version, { ...shared.goMicro, PEER_MODE: "publish", PEER_TOPIC: topic, PEER_LINGER_MS: String(shared.goLingerMs), ...env }, ["published"]);

      cell(shared.row, version, "go publisher → tsmicro subscriber", async () => {
        const topic = uniqueTopic("go2ts");
        const inbox = new Inbox();
        const sub = await broker.subscribe(topic, inbox.handler);
        try {
          await goPublish(topic, { PEER_HEADER: JSON.stringify(HEADER), PEER_BODY: BODY.toString("base64") });
          const [event] = await inbox.atLeast(1);
          assert.deepEqual(event!.message.header, HEADER, "headers as published");
          assert.deepEqual(Buffer.from(event!.message.body), BODY, "body byte-identical");
        } finally {
          await sub.unsubscribe();
        }
        for (const contentType of ["application/json", "application/protobuf"]) {
          const typedTopic = uniqueTopic("go2ts.typed");
          const students: unknown[] = [];
          const headers: Record<string, string>[] = [];
          const inbox2 = new Inbox();
          const typed = await subscribeEvent(broker, typedTopic, async (student, event) => {
            students.push(student);
            headers.push(event.message.header);
            await inbox2.handler(event);
          }, { schema: StudentSchema });
          try {
            await goPublish(typedTopic, { PEER_CONTENT_TYPE: contentType });
            await inbox2.atLeast(1);
            assert.deepEqual({ ...(students[0] as object), $typeName: undefined }, { ...DAVIE, $typeName: undefined }, `typed ${contentType} Student`);
            assert.equal(headers[0]!["Content-Type"], contentType);
            // go-micro v4 title-cases metadata keys on the way out ("name" → "Name").
            const name = Object.entries(headers[0]!).find(([k]) => k.toLowerCase() === "name")?.[1];
            assert.equal(name, "davie", "the publisher's metadata travels as headers");
          } finally {
            await typed.unsubscribe();
          }
        }
      });

      cell(shared.row, version, "tsmicro publisher → go subscriber", async () => {
        const topic = uniqueTopic("ts2go");
        const peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "subscribe", PEER_TOPIC: topic });
        try {
          await peer.next((l) => "ready" in l, 20_000, "ready line");
          const got = await publishUntilHeard(peer, () => broker.publish(topic, { header: HEADER, body: BODY }));
          assert.equal(got.topic, topic);
          assert.deepEqual(got.header, { ...HEADER, ...shared.goAddsHeader(topic) }, "headers as published");
          assert.deepEqual(Buffer.from(got.body, "base64"), BODY, "body byte-identical");
        } finally {
          await peer.stop();
        }
      });

      cell(shared.row, version, "tsmicro typed event → go typed subscriber", async () => {
        for (const contentType of ["application/json", "application/protobuf"]) {
          const topic = uniqueTopic("typed");
          const peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "subscribe", PEER_TYPED: "1", PEER_TOPIC: topic });
          try {
            await peer.next((l) => "ready" in l, 20_000, "ready line");
            const student = create(StudentSchema, DAVIE);
            const got = await publishUntilHeard(peer, () => publishEvent(broker, topic, student, { schema: StudentSchema, contentType, header: { name: "davie" } }), "student");
            assert.deepEqual(got.student, DAVIE, `a go-micro subscriber of *Student decodes the ${contentType} event`);
            const name = Object.entries(got.header as Record<string, string>).find(([k]) => k.toLowerCase() === "name")?.[1];
            assert.equal(name, "davie", "the event's header reaches the Go handler as metadata");
          } finally {
            await peer.stop();
          }
        }
      });

      // Brokers whose queue groups cannot be shared with go-micro's say why (see the README).
      const sharedQueue = shared.noSharedQueue ? undefined : "queue group shared by go and tsmicro";
      if (sharedQueue) cell(shared.row, version, sharedQueue, async () => {
        const topic = uniqueTopic("queue");
        const queue = `q-${randomUUID().slice(0, 8)}`;
        const cleanup = await shared.sharedQueueSetup?.(topic);
        const peer: Peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "subscribe", PEER_TOPIC: topic, PEER_QUEUE: queue });
        const inbox = new Inbox();
        const sub = await broker.subscribe(topic, inbox.handler, { queue });
        try {
          await peer.next((l) => "ready" in l, 20_000, "ready line");
          await warmUp(peer, inbox, () => broker.publish(topic, { header: { seq: "warm" }, body: Buffer.from("warm-up") }));
          const count = 20;
          for (let i = 0; i < count; i++) await broker.publish(topic, { header: { seq: String(i) }, body: Buffer.from(`message ${i}`) });
          const { go, tsmicro } = await collect(peer, [inbox], count);
          assert.deepEqual(sortedSeqs([...go, ...tsmicro]), seqs(count), "every message once, across both languages");
          assert.ok(go.length > 0 && tsmicro.length > 0, `both members got messages (go ${go.length}, tsmicro ${tsmicro.length})`);
        } finally {
          await sub.unsubscribe();
          await peer.stop();
          await cleanup?.();
        }
      });

      // With durable queue groups on both sides (tsmicro's durableQueues, go-micro's DurableQueue()) the
      // declarations match, whoever comes first, and the group's messages wait while it is away.
      if (shared.tsmicro.startsWith("amqp:")) cell(shared.row, version, "durable queue group shared by go and tsmicro", async () => {
        const topic = uniqueTopic("durable");
        const queue = `q-${randomUUID().slice(0, 8)}`;
        const durable = await createBroker<RabbitMQBrokerOptions>(shared.tsmicro, { durableQueues: true });
        await durable.connect();
        const amqp = await import("amqplib");
        const admin = await amqp.connect(shared.tsmicro);
        try {
          // tsmicro declares the queue first; go-micro's durable declaration matches it.
          const inbox = new Inbox();
          const sub = await durable.subscribe(topic, inbox.handler, { queue });
          const peer: Peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "subscribe", PEER_TOPIC: topic, PEER_QUEUE: queue, PEER_DURABLE_QUEUE: "1" });
          try {
            await peer.next((l) => "ready" in l, 20_000, "ready line");
            await warmUp(peer, inbox, () => durable.publish(topic, { header: { seq: "warm" }, body: Buffer.from("warm-up") }));
            for (let i = 0; i < 20; i++) await durable.publish(topic, { header: { seq: String(i) }, body: Buffer.from(`message ${i}`) });
            const { go, tsmicro } = await collect(peer, [inbox], 20);
            assert.deepEqual(sortedSeqs([...go, ...tsmicro]), seqs(20), "every message once, across both languages");
            assert.ok(go.length > 0 && tsmicro.length > 0, `both members got messages (go ${go.length}, tsmicro ${tsmicro.length})`);
          } finally {
            await peer.stop();
          }
          // With every member gone, the durable queue keeps what comes meanwhile.
          await sub.unsubscribe();
          await durable.publish(topic, { header: { seq: "kept" }, body: Buffer.from("kept") });
          const channel = await admin.createChannel();
          assert.equal((await channel.checkQueue(queue)).messageCount, 1, "the durable queue kept the message while the group was away");
        } finally {
          const channel = await admin.createChannel();
          await channel.deleteQueue(queue);
          await admin.close();
          await durable.disconnect();
        }
      });

      // A Kafka group resumes from its committed offsets, whoever committed them. Kafka's convention
      // (Sarama's) is "the next offset to read": a Go member taking over must neither skip nor repeat.
      // The other way round cannot be checked here: go-micro v4's kafka broker never commits on Kafka
      // 4 (its Sarama speaks 0.10.2 by default, whose commits Kafka 4 refuses; with 2.1 they do not
      // show either), so a Go member's group restarts at its last tsmicro commit.
      if (shared.tsmicro.startsWith("kafka:")) cell(shared.row, version, "queue group handed over tsmicro → go at the committed offset", async () => {
        const topic = uniqueTopic("handover");
        const queue = `q-${randomUUID().slice(0, 8)}`;
        const cleanup = await createKafkaTopic(topic, 1);
        const publishRange = async (from: number, to: number) => {
          for (let i = from; i < to; i++) await broker.publish(topic, { header: { seq: String(i) }, body: Buffer.from(`message ${i}`) });
        };
        try {
          // tsmicro starts the group and handles 0-4; 5-9 wait for the next member.
          const first = new Inbox();
          const sub = await broker.subscribe(topic, first.handler, { queue });
          await publishRange(0, 5);
          await first.atLeast(5);
          await sub.unsubscribe();
          assert.deepEqual(first.events.map((e) => e.message.header.seq), ["0", "1", "2", "3", "4"]);
          assert.equal(await committedOffset(queue, topic), 5n, "tsmicro committed the next offset to read, Kafka's convention");
          await publishRange(5, 10);
          // go-micro takes over at tsmicro's committed offset.
          const peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "subscribe", PEER_TOPIC: topic, PEER_QUEUE: queue });
          const goSeqs: string[] = [];
          try {
            await peer.next((l) => "ready" in l, 20_000, "ready line");
            for (let i = 0; i < 5; i++) goSeqs.push((await peer.next((l) => "body" in l, 20_000, `message ${5 + i}`)).header.seq);
            await publishRange(10, 11);
            goSeqs.push((await peer.next((l) => "body" in l, 10_000, "message 10")).header.seq);
          } finally {
            await peer.stop();
          }
          assert.deepEqual(goSeqs, ["5", "6", "7", "8", "9", "10"], "go-micro resumed where tsmicro left, nothing skipped or twice");
        } finally {
          await cleanup();
        }
      });

      // go-micro names a rabbitmq group's queue after the group alone: one group on two topics is one
      // queue bound to both, whose members get both topics' messages. tsmicro hands each delivery to
      // its subscriber of that topic, so a tsmicro handler never sees another topic's message.
      if (shared.tsmicro.startsWith("amqp:")) cell(shared.row, version, "one queue group on two topics", async () => {
        const [first, second] = [uniqueTopic("group.first"), uniqueTopic("group.second")];
        const queue = `q-${randomUUID().slice(0, 8)}`;
        const peer: Peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "subscribe", PEER_TOPIC: first, PEER_QUEUE: queue });
        const [firstInbox, secondInbox] = [new Inbox(), new Inbox()];
        const subs = [await broker.subscribe(first, firstInbox.handler, { queue }), await broker.subscribe(second, secondInbox.handler, { queue })];
        try {
          await peer.next((l) => "ready" in l, 20_000, "ready line");
          await warmUp(peer, firstInbox, () => broker.publish(first, { header: { seq: "warm" }, body: Buffer.from("warm-up") }));
          const count = 10;
          for (let i = 0; i < count; i++) {
            await broker.publish(first, { header: { seq: String(i) }, body: Buffer.from(`first ${i}`) });
            await broker.publish(second, { header: { seq: String(count + i) }, body: Buffer.from(`second ${i}`) });
          }
          const { go, tsmicro, goTopics } = await collect(peer, [firstInbox, secondInbox], 2 * count);
          assert.deepEqual(sortedSeqs([...go, ...tsmicro]), seqs(2 * count), "every message of both topics once, across both languages");
          assert.ok(firstInbox.events.every((e) => e.topic === first && !(Number(e.message.header.seq) >= count)), "the first topic's handler got only its messages");
          assert.ok(secondInbox.events.every((e) => e.topic === second && Number(e.message.header.seq) >= count), "the second topic's handler got only its messages");
          // The go-micro subscriber of the first topic gets the second's too: that is go-micro's own behaviour.
          for (const [i, seq] of go.entries()) assert.equal(goTopics[i], Number(seq) < count ? first : second, "go-micro reports each message's own topic");
        } finally {
          for (const sub of subs) await sub.unsubscribe();
          await peer.stop();
        }
      });
    });
  }
}

/**
 * Until both members of a queue group have had a message (a go-micro rabbitmq subscriber declares its
 * queue after Subscribe returns, Kafka members join and rebalance in the background), warm-up
 * messages; then each counted message must go to exactly one member.
 */
async function warmUp(peer: Peer, inbox: Inbox, publishWarm: () => Promise<void>) {
  let goWarm = false;
  for (let attempt = 1; !(goWarm && inbox.events.length > 0); attempt++) {
    if (attempt > 30) assert.fail(`both members did not get warm-up messages (go: ${goWarm}, tsmicro: ${inbox.events.length})`);
    await publishWarm();
    goWarm ||= !!(await peer.next((l) => "body" in l, 500, "warm-up").catch(() => undefined));
    await inbox.atLeast(1, 500).catch(() => {});
  }
}

/** The counted (non-warm-up) sequence numbers the Go peer and the tsmicro inboxes got, once count add up (bounded). */
async function collect(peer: Peer, inboxes: Inbox[], count: number) {
  const counted = (seq: string | undefined) => seq !== undefined && seq !== "warm";
  const tsmicroSeqs = () => inboxes.flatMap((inbox) => inbox.events.map((e) => e.message.header.seq)).filter(counted) as string[];
  const go: string[] = [];
  const goTopics: string[] = [];
  const deadline = Date.now() + 15_000;
  while (tsmicroSeqs().length + go.length < count && Date.now() < deadline) {
    const line = await peer.next((l) => "body" in l, Math.max(1, deadline - Date.now()), "message").catch(() => undefined);
    if (!line) break;
    if (!counted(line.header.seq)) continue;
    go.push(line.header.seq);
    goTopics.push(line.topic);
  }
  // A message handled twice would come on top: give it half a second to show.
  const extra = await peer.next((l) => "body" in l && counted(l.header.seq), 500, "extra message").catch(() => undefined);
  if (extra) go.push(extra.header.seq), goTopics.push(extra.topic);
  return { go, goTopics, tsmicro: tsmicroSeqs() };
}

const seqs = (count: number) => Array.from({ length: count }, (_, i) => i);
const sortedSeqs = (list: string[]) => list.map(Number).sort((a, b) => a - b);

/** The group's committed offset of the topic's partition 0 on the shared Kafka (-1 for none). */
async function committedOffset(group: string, topic: string): Promise<bigint> {
  const { Admin } = await import("@platformatic/kafka");
  const admin = new Admin({ clientId: "tsmicro-interop", bootstrapBrokers: ["127.0.0.1:9092"] });
  try {
    const [listed] = await admin.listConsumerGroupOffsets({ groups: [{ groupId: group, topics: [{ name: topic, partitionIndexes: [0] }] }] });
    return listed?.topics.find((t) => t.name === topic)?.partitions.find((p) => p.partitionIndex === 0)?.committedOffset ?? -1n;
  } finally {
    await admin.close();
  }
}

/** Creates the topic on the shared Kafka (4 partitions: a group shares a topic by partitions); the cleanup deletes it. */
async function createKafkaTopic(topic: string, partitions = 4): Promise<() => Promise<void>> {
  const { Admin } = await import("@platformatic/kafka");
  const admin = new Admin({ clientId: "tsmicro-interop", bootstrapBrokers: ["127.0.0.1:9092"] });
  await admin.createTopics({ topics: [topic], partitions, replicas: 1 });
  return async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.close();
  };
}

describe("rabbitmq: an exchange go-micro declared first", () => {
  test("is used as it is (go-micro declares it not durable; tsmicro would declare it durable)", async () => {
    const amqp = await import("amqplib");
    const exchange = `interop.go-declared.${randomUUID().slice(0, 8)}`;
    const connection = await amqp.connect("amqp://guest:guest@127.0.0.1:5672");
    const broker = await createBroker("amqp://guest:guest@127.0.0.1:5672", { exchange } as never);
    const channel = await connection.createChannel();
    try {
      await channel.assertExchange(exchange, "topic", { durable: false }); // go-micro's default
      await broker.connect();
      const inbox = new Inbox();
      const topic = uniqueTopic("go-declared");
      await broker.subscribe(topic, inbox.handler);
      await broker.publish(topic, { header: HEADER, body: BODY });
      const [event] = await inbox.atLeast(1);
      assert.deepEqual(Buffer.from(event!.message.body), BODY);
    } finally {
      await broker.disconnect();
      await channel.deleteExchange(exchange);
      await connection.close();
    }
  });
});
