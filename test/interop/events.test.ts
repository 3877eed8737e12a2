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
    noSharedQueue: "tsmicro's queue group is the durable queue <group>:<topic>, go-micro's the queue <group>",
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
    noSharedQueue: "tsmicro's consumer group is <queue>:<topic>, go-micro's is <queue>",
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
        const peer: Peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "subscribe", PEER_TOPIC: topic, PEER_QUEUE: queue });
        const inbox = new Inbox();
        const sub = await broker.subscribe(topic, inbox.handler, { queue });
        try {
          await peer.next((l) => "ready" in l, 20_000, "ready line");
          const count = 20;
          for (let i = 0; i < count; i++) await broker.publish(topic, { header: { seq: String(i) }, body: Buffer.from(`message ${i}`) });
          // Each message goes to one member: wait until the two inboxes add up to every message.
          const seen: string[] = [];
          const deadline = Date.now() + 10_000;
          let goCount = 0;
          while (inbox.events.length + goCount < count && Date.now() < deadline) {
            const line = await peer.next((l) => "body" in l, Math.max(1, deadline - Date.now()), "message").catch(() => undefined);
            if (!line) break;
            goCount++;
            seen.push(line.header.seq);
          }
          seen.push(...inbox.events.map((e) => e.message.header.seq!));
          assert.deepEqual(seen.map(Number).sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i), "every message once, across both languages");
          assert.ok(goCount > 0 && inbox.events.length > 0, `both members got messages (go ${goCount}, tsmicro ${inbox.events.length})`);
        } finally {
          await sub.unsubscribe();
          await peer.stop();
        }
      });
    });
  }
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
