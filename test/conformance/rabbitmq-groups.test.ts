/**
 * RabbitMQ queue groups named as go-micro names them: the queue "<group>", one per group whatever
 * the topic, so one group on several topics is one queue bound to each. A tsmicro handler still
 * gets only its own topic's messages: a delivery goes to the broker's subscriber of its routing
 * key in that group; one without any goes back to the queue once and is then dropped.
 * Runs on the shared RabbitMQ (.ci/setup/brokers.sh).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it, type TestContext } from "node:test";
import type { Broker, Event } from "../../src/broker/broker.ts";
import { createBroker } from "../../src/cmd/create.ts";
import { canConnect, skipOrFail, waitUntil } from "../helpers/net.ts";

const URL = "amqp://guest:guest@127.0.0.1:5672";
const unique = (what: string) => `tsmicro.test.groups.${what}.${randomUUID().slice(0, 8)}`;

async function connected(t: TestContext, opts: Record<string, unknown> = {}): Promise<Broker | undefined> {
  if (!(await canConnect(5672))) return void skipOrFail(t, "RabbitMQ is not listening on 127.0.0.1:5672 (source .ci/setup/brokers.sh)", true);
  const broker = await createBroker(URL, opts);
  await broker.connect();
  t.after(() => broker.disconnect());
  return broker;
}

/** Records each delivery's topic and id. */
function recorder() {
  const got: Array<{ topic: string; id: string }> = [];
  return { got, handler: async (e: Event) => void got.push({ topic: e.topic, id: e.message.header.id ?? "" }) };
}

describe("rabbitmq queue groups across topics", () => {
  it("one group on two topics: each subscriber gets its own topic's messages, each once", async (t) => {
    const broker = await connected(t);
    if (!broker) return;
    const [first, second] = [unique("first"), unique("second")];
    const group = unique("group");
    const [a, b] = [recorder(), recorder()];
    await broker.subscribe(first, a.handler, { queue: group });
    await broker.subscribe(second, b.handler, { queue: group });
    for (let i = 0; i < 20; i++) {
      await broker.publish(first, { header: { id: `first-${i}` }, body: Buffer.from("1") });
      await broker.publish(second, { header: { id: `second-${i}` }, body: Buffer.from("2") });
    }
    await waitUntil(() => a.got.length + b.got.length >= 40, 15_000, "all 40 messages");
    assert.ok(a.got.every((d) => d.topic === first && d.id.startsWith("first-")), "the first topic's subscriber got only its messages");
    assert.ok(b.got.every((d) => d.topic === second && d.id.startsWith("second-")), "the second topic's subscriber got only its messages");
    assert.equal(new Set(a.got.map((d) => d.id)).size, 20);
    assert.equal(new Set(b.got.map((d) => d.id)).size, 20);
  });

  it("a topic bound to the group's queue that no member here subscribes: its message goes back once, then is dropped", async (t) => {
    // Durable, so the queue and its binding to the first topic outlive that topic's only subscriber.
    const leaving = await connected(t, { durableQueues: true });
    const staying = await connected(t, { durableQueues: true });
    if (!leaving || !staying) return;
    const [orphan, kept] = [unique("orphan"), unique("kept")];
    const group = unique("group");
    const amqp = await import("amqplib");
    const admin = await amqp.connect(URL);
    t.after(async () => {
      const channel = await admin.createChannel();
      await channel.deleteQueue(group);
      await admin.close();
    });
    const sub = await leaving.subscribe(orphan, async () => {}, { queue: group });
    await sub.unsubscribe();
    const received = recorder();
    await staying.subscribe(kept, received.handler, { queue: group });
    await staying.publish(orphan, { header: { id: "orphan" }, body: Buffer.from("nobody here subscribes") });
    await staying.publish(kept, { header: { id: "kept" }, body: Buffer.from("mine") });
    await waitUntil(() => received.got.length >= 1, 15_000, "the kept topic's message");
    // The consumer is still there and takes the next one.
    await staying.publish(kept, { header: { id: "kept-2" }, body: Buffer.from("mine") });
    await waitUntil(() => received.got.length >= 2, 15_000, "the next message");
    assert.deepEqual(received.got, [{ topic: kept, id: "kept" }, { topic: kept, id: "kept-2" }], "the subscriber never saw the other topic's message");
    // Closing the consumer hands back what it holds: a message still going round would be there.
    await staying.disconnect();
    const channel = await admin.createChannel();
    assert.equal((await channel.checkQueue(group)).messageCount, 0, "the other topic's message was dropped, not left going round");
  });
});
