import assert from "node:assert/strict";
import { test } from "node:test";
import MemoryRegistry from "../../src/registry/memory.ts";
import { Selector, filterVersion } from "../../src/index.ts";

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

test("excluded and recently failed nodes are passed over, unless nothing else is left", async () => {
  const selector = new Selector(await registryWith(2), "random");
  const next = await selector.select("svc");
  const first = next()!;
  for (let i = 0; i < 20; i++) assert.notEqual(next(new Set([first.id]))!.id, first.id);
  assert.equal(next(new Set(["svc-v1-0", "svc-v1-1"])), undefined);
  selector.mark(first, true);
  for (let i = 0; i < 20; i++) assert.notEqual(next()!.id, first.id);
  const other = next()!;
  selector.mark(other, true);
  assert.ok(next(), "with every node penalised one is still tried");
});

test("version filter", async () => {
  const registry = await registryWith(1, "v1");
  await registry.register({ name: "svc", version: "v2", nodes: [{ id: "svc-v2", address: "127.0.0.1:2000" }] });
  const next = await new Selector(registry).select("svc", { filters: [filterVersion("v2")] });
  assert.equal(next()!.id, "svc-v2");
});
