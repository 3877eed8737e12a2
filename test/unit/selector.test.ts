import assert from "node:assert/strict";
import { test } from "node:test";
import MemoryRegistry from "../../src/registry/memory.ts";
import { LatencyStrategy, Selector, filterVersion } from "../../src/index.ts";
import { FORGET_NODE_AFTER_MS } from "../../src/resilience/breaker.ts";

async function registryWith(nodes: number, version = "v1") {
  const registry = new MemoryRegistry({ isolated: true });
  for (let i = 0; i < nodes; i++) {
    await registry.register({ name: "svc", version, nodes: [{ id: `svc-${version}-${i}`, address: `127.0.0.1:${1000 + i}` }] });
  }
  return registry;
}

test("roundrobin visits every node in turn", async () => {
  const selector = new Selector(await registryWith(3), "roundrobin");
  const next = await selector.select("svc");
  const picks = Array.from({ length: 6 }, () => next()!.id);
  assert.equal(new Set(picks.slice(0, 3)).size, 3);
  assert.deepEqual(picks.slice(3), picks.slice(0, 3));
});

test("excluded nodes and nodes held off by their breaker are passed over, unless nothing else is left", async () => {
  const held = new Set<string>();
  const health = { get avoiding() { return held.size; }, avoid: (n: { id: string }) => held.has(n.id) };
  const selector = new Selector(await registryWith(2), "random", health);
  const next = await selector.select("svc");
  const first = next()!;
  for (let i = 0; i < 20; i++) assert.notEqual(next(new Set([first.id]))!.id, first.id);
  assert.equal(next(new Set(["svc-v1-0", "svc-v1-1"])), undefined);
  held.add(first.id);
  for (let i = 0; i < 20; i++) assert.notEqual(next()!.id, first.id);
  held.add(next()!.id);
  assert.ok(next(), "with every node held off one is still returned (its breaker fails the call)");
});

const ANY_CALL = {
  service: "svc",
  endpoint: "A.B",
  node: { id: "", address: "" },
  request: { service: "svc", endpoint: "A.B", contentType: "", headers: {}, body: new Uint8Array() },
  timeoutMs: 1000,
  attempt: 0,
};

/** One call through the strategy's measuring wrapper that answers after ms. */
const answered = (latency: LatencyStrategy, id: string, ms: number) =>
  latency.wrapCall(() => new Promise((r) => setTimeout(() => r({ contentType: "", body: new Uint8Array() }), ms)))({ ...ANY_CALL, node: { id, address: "" } });

/** Node ids from the fastest measured to the slowest (a busy machine may fire a short timer late, so by measurement, not by plan). */
const byLatency = (latency: LatencyStrategy, ids: string[]) => [...ids].sort((a, b) => latency.latency(a) - latency.latency(b));

test("latency picks the node with the lower response time × calls in flight, of two drawn", async () => {
  const selector = new Selector(await registryWith(3), "latency");
  const latency = selector.strategy as LatencyStrategy;
  const next = await selector.select("svc");
  await Promise.all([answered(latency, "svc-v1-0", 1), answered(latency, "svc-v1-1", 60), answered(latency, "svc-v1-2", 60)]);
  const [fastest] = byLatency(latency, ["svc-v1-0", "svc-v1-1", "svc-v1-2"]);
  const picks = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const id = next()!.id;
    picks.set(id, (picks.get(id) ?? 0) + 1);
  }
  // The fastest node wins every draw it is in (2 of 3 draws); the others split the rest.
  assert.ok((picks.get(fastest!) ?? 0) > 150, `fastest node picked ${picks.get(fastest!)} of 300`);
});

test("version filter", async () => {
  const registry = await registryWith(1, "v1");
  await registry.register({ name: "svc", version: "v2", nodes: [{ id: "svc-v2", address: "127.0.0.1:2000" }] });
  const next = await new Selector(registry).select("svc", { filters: [filterVersion("v2")] });
  assert.equal(next()!.id, "svc-v2");
});

test("nodes are looked up once, and again after the registry reports a change", async () => {
  const registry = await registryWith(1);
  let lookups = 0;
  const getService = registry.getService.bind(registry);
  registry.getService = (name) => (lookups++, getService(name));
  const selector = new Selector(registry);
  for (let i = 0; i < 5; i++) assert.equal((await selector.select("svc"))()!.id, "svc-v1-0");
  assert.equal(lookups, 1);
  await registry.deregister({ name: "svc", version: "v1", nodes: [{ id: "svc-v1-0", address: "127.0.0.1:1000" }] });
  await registry.register({ name: "svc", version: "v1", nodes: [{ id: "svc-v1-new", address: "127.0.0.1:1001" }] });
  await new Promise((r) => setImmediate(r)); // watch events are delivered asynchronously
  assert.equal((await selector.select("svc"))()!.id, "svc-v1-new");
  assert.equal(lookups, 2);
  selector.close();
});

test("a service that is not found is looked up again on the next call", async () => {
  const registry = new MemoryRegistry({ isolated: true });
  const selector = new Selector(registry);
  await assert.rejects(selector.select("svc"), /service not found/);
  await registry.register({ name: "svc", version: "v1", nodes: [{ id: "svc-1", address: "127.0.0.1:1000" }] });
  assert.equal((await selector.select("svc"))()!.id, "svc-1");
  selector.close();
});

test("latency: a node not measured for a while gets one probe, then the faster node has the calls again", async () => {
  const latency = new LatencyStrategy({ probeAfterMs: 50 });
  const nodes = [
    { id: "a", address: "" },
    { id: "b", address: "" },
  ];
  await Promise.all([answered(latency, "a", 1), answered(latency, "b", 30)]);
  const [fast, slow] = byLatency(latency, ["a", "b"]);
  for (let i = 0; i < 10; i++) assert.equal(latency.select(nodes).id, fast);
  await new Promise((r) => setTimeout(r, 80)); // the probe period itself is what is tested
  const picks = [latency.select(nodes).id, latency.select(nodes).id, latency.select(nodes).id];
  assert.equal(picks.filter((id) => id === slow).length, 1, `one probe of the slow node in ${picks}`);
  assert.equal(picks[2], fast);
});

test("latency: a node not called for FORGET_NODE_AFTER_MS is forgotten (nodes come and go), unless a call to it is running", async (t) => {
  let now = 1_000;
  t.mock.method(performance, "now", () => now);
  const latency = new LatencyStrategy();
  const response = { contentType: "", body: new Uint8Array() };
  const callTo = (id: string) => ({ ...ANY_CALL, node: { id, address: "" } });
  /** A call that takes ms on the mocked clock. */
  const taking = (id: string, ms: number) => latency.wrapCall(async () => ((now += ms), response))(callTo(id));
  await taking("gone", 5);
  assert.equal(latency.latency("gone"), 5);
  let finish = () => {};
  const running = latency.wrapCall(() => new Promise((resolve) => (finish = () => resolve(response))))(callTo("busy"));
  now += FORGET_NODE_AFTER_MS + 1;
  await taking("live", 3); // the first sample a period on looks for nodes to forget
  assert.equal(latency.latency("gone"), 0, "forgotten");
  assert.equal(latency.latency("live"), 3);
  finish();
  await running;
  assert.equal(latency.latency("busy"), FORGET_NODE_AFTER_MS + 4, "the node with a call running kept its stats, which took the call's time");
});
