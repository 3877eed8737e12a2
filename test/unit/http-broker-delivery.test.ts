/** How the default (http) broker reaches each kind of subscriber node, with real brokers on loopback. */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import HttpBroker, { HTTP_BROKER_SERVICE } from "../../src/broker/http.ts";
import MemoryRegistry from "../../src/registry/memory.ts";

const registry = new MemoryRegistry({ isolated: true });
const subscriber = new HttpBroker({ registry });
const publisher = new HttpBroker({ registry });
await subscriber.connect();
await publisher.connect();
after(() => Promise.all([subscriber.disconnect(), publisher.disconnect()]));

const node = (id: string, address: string, topic: string, metadata: Record<string, string> = {}) =>
  registry.register({ name: HTTP_BROKER_SERVICE, version: "ff.http.broadcast", nodes: [{ id, address, metadata: { secure: "false", broker: "http", topic, ...metadata } }] });

test("a tsmicro subscriber advertises frame delivery and gets its events, handler failures reported", async () => {
  const got: string[] = [];
  await subscriber.subscribe("delivery.ok", (e) => void got.push(Buffer.from(e.message.body).toString()));
  const [record] = await registry.getService(HTTP_BROKER_SERVICE);
  assert.ok(record!.nodes.some((n) => n.metadata?.delivery === "tsmicro-frames"), "the node advertises frame delivery");
  await Promise.all(["a", "b", "c"].map((b) => publisher.publish("delivery.ok", { header: { k: "v" }, body: Buffer.from(b) })));
  assert.deepEqual(got.sort(), ["a", "b", "c"], "published concurrently, batched, all delivered");
  await subscriber.subscribe("delivery.fails", () => {
    throw new Error("handler says no");
  });
  await assert.rejects(publisher.publish("delivery.fails", { header: {}, body: Buffer.from("x") }), /handler says no/);
});

test("a subscription gone by the time its delivery arrives is not delivered and not a failure", async () => {
  // The publisher's registry still lists a subscription the subscriber broker no longer has.
  await node("delivery.gone-stale", subscriber.address(), "delivery.gone", { delivery: "tsmicro-frames" });
  await publisher.publish("delivery.gone", { header: {}, body: Buffer.from("x") });
});

test("a node without the capability (go-micro's) gets go-micro's HTTP POST with the JSON broker.Message", async () => {
  const posts: Array<{ url?: string; body: unknown }> = [];
  const goMicro = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      posts.push({ url: req.url, body: JSON.parse(Buffer.concat(chunks).toString()) });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => goMicro.listen(0, "127.0.0.1", resolve));
  after(() => new Promise<void>((resolve) => goMicro.close(() => resolve())));
  await node("delivery.go-1", `127.0.0.1:${(goMicro.address() as AddressInfo).port}`, "delivery.go");
  await publisher.publish("delivery.go", { header: { name: "davie" }, body: Buffer.from("hi") });
  assert.deepEqual(posts, [{ url: "/?id=delivery.go-1", body: { Header: { name: "davie", "Micro-Topic": "delivery.go" }, Body: Buffer.from("hi").toString("base64") } }]);
});
