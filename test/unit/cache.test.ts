import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CacheRegistry } from "../../src/registry/cache.ts";
import MemoryRegistry from "../../src/registry/memory.ts";
import { RegistryUnavailableError, ServiceNotFoundError, type Service } from "../../src/registry/registry.ts";
import { waitUntil } from "../helpers/net.ts";

const svc = (nodeId: string, version = "v1", metadata: Record<string, string> = {}): Service => ({
  name: "greeter",
  version,
  metadata,
  endpoints: [],
  nodes: [{ id: nodeId, address: `127.0.0.1:${1000 + Number(nodeId.replace(/\D/g, "") || 0)}`, metadata: {} }],
});

/** An isolated memory registry that counts lookups and can be made unreachable or slow. */
class ProbeRegistry extends MemoryRegistry {
  lookups = 0;
  unreachable = false;
  /** When set, lookups wait for it (to hold several callers in one miss). */
  gate?: Promise<void>;

  constructor() {
    super({ isolated: true });
  }

  override async getService(name: string): Promise<Service[]> {
    this.lookups++;
    await this.gate;
    if (this.unreachable) throw new RegistryUnavailableError("probe", "connection refused");
    return super.getService(name);
  }
}

const nodeIds = (services: Service[]) => services.flatMap((s) => s.nodes.map((n) => n.id)).sort();

/** Waits until the cache answers ServiceNotFoundError for greeter. */
const notFoundWithin = (cache: CacheRegistry, timeoutMs: number, what: string) =>
  waitUntil(() => cache.getService("greeter").then(() => false, (err) => err instanceof ServiceNotFoundError), timeoutMs, what);

function setup(ttl?: number) {
  const registry = new ProbeRegistry();
  const lines: string[] = [];
  const cache = new CacheRegistry(registry, { ttl, log: (line) => lines.push(line) });
  return { registry, cache, lines };
}

describe("cache registry", () => {
  it("cache: concurrent misses for one service make one registry lookup", async () => {
    const { registry, cache } = setup();
    await registry.register(svc("n1"));
    let open!: () => void;
    registry.gate = new Promise((r) => (open = r));
    const calls = Array.from({ length: 10 }, () => cache.getService("greeter"));
    open();
    const results = await Promise.all(calls);
    assert.equal(registry.lookups, 1);
    for (const r of results) assert.deepEqual(nodeIds(r), ["n1"]);
    await cache.close();
  });

  it("cache: later calls are served without a registry round-trip", async () => {
    const { registry, cache } = setup();
    await registry.register(svc("n1"));
    await cache.getService("greeter");
    for (let i = 0; i < 5; i++) await cache.getService("greeter");
    assert.equal(registry.lookups, 1);
    await cache.close();
  });

  it("cache: callers get copies, so mutating a result cannot corrupt the cache", async () => {
    const { registry, cache } = setup();
    await registry.register(svc("n1"));
    const first = await cache.getService("greeter");
    first[0]!.nodes.length = 0;
    assert.deepEqual(nodeIds(await cache.getService("greeter")), ["n1"]);
    await cache.close();
  });

  it("cache: watch events add, update and evict nodes without new lookups", async () => {
    const { registry, cache } = setup();
    await registry.register(svc("n1"));
    await cache.getService("greeter");

    await registry.register(svc("n2"));
    await waitUntil(async () => nodeIds(await cache.getService("greeter")).join() === "n1,n2", 2000, "n2 to appear");

    await registry.register(svc("n2", "v1", { colour: "blue" }));
    await waitUntil(async () => (await cache.getService("greeter"))[0]!.metadata?.colour === "blue", 2000, "the update");
    assert.deepEqual(nodeIds(await cache.getService("greeter")), ["n1", "n2"], "an update keeps the other nodes");

    await registry.register(svc("n3", "v2"));
    await waitUntil(async () => (await cache.getService("greeter")).length === 2, 2000, "version v2 to appear");

    await registry.deregister(svc("n1"));
    await waitUntil(async () => !nodeIds(await cache.getService("greeter")).includes("n1"), 2000, "n1 to be evicted");
    assert.equal(registry.lookups, 1, "all of it came from the watch");
    await cache.close();
  });

  it("cache: a node re-registered under another version moves to it", async () => {
    const { registry, cache } = setup();
    await registry.register(svc("n1", "v1"));
    await cache.getService("greeter");
    await registry.register(svc("n1", "v2"));
    await waitUntil(async () => (await cache.getService("greeter"))[0]?.version === "v2", 2000, "n1 under v2");
    const services = await cache.getService("greeter");
    assert.deepEqual(services.map((s) => [s.version, nodeIds([s])]), [["v2", ["n1"]]]);
    await cache.close();
  });

  it("cache: when the last node is deleted the service is gone (not found), not served from cache", async () => {
    const { registry, cache } = setup();
    await registry.register(svc("n1"));
    await cache.getService("greeter");
    await registry.deregister(svc("n1"));
    await notFoundWithin(cache, 2000, "not found after the delete event");
    await cache.close();
  });

  it("cache: a miss for an unknown service is ServiceNotFoundError", async () => {
    const { cache } = setup();
    await assert.rejects(cache.getService("nobody"), ServiceNotFoundError);
    await cache.close();
  });

  it("cache: registry unreachable → last known nodes keep being served and one line is logged", async () => {
    const { registry, cache, lines } = setup(0.05);
    await registry.register(svc("n1"));
    await cache.getService("greeter");
    registry.unreachable = true;
    const lookupsBefore = registry.lookups;
    // Expired entries refresh in the background; every call still gets the nodes at once.
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(nodeIds(await cache.getService("greeter")), ["n1"]);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(registry.lookups > lookupsBefore, "the cache did try the registry");
    assert.equal(lines.filter((l) => l.includes("unreachable")).length, 1, `one outage line, got: ${lines.join(" | ")}`);
    assert.match(lines[0]!, /serving last known nodes/);

    registry.unreachable = false;
    const recovered = () => lines.some((l) => l.includes("reachable again"));
    await waitUntil(async () => (await cache.getService("greeter"), recovered()), 3000, "a successful refresh after recovery");
    await cache.close();
  });

  it("cache: a node whose registration lapsed during an outage is kept until it re-registers", async () => {
    const { registry, cache } = setup();
    await registry.register(svc("n1"));
    await cache.getService("greeter");
    // The registry goes away and, meanwhile, reports the node's lease as lapsed.
    registry.unreachable = true;
    await registry.deregister(svc("n1"));
    await waitUntil(() => registry.lookups > 1, 2000, "the cache to check the delete with the registry");
    assert.deepEqual(nodeIds(await cache.getService("greeter")), ["n1"], "kept while the registry cannot confirm");
    // Back, without the node yet: not found means "not re-registered yet".
    registry.unreachable = false;
    const lookupsBefore = registry.lookups;
    await waitUntil(async () => (await cache.getService("greeter"), registry.lookups > lookupsBefore), 3000, "a lookup after the outage");
    assert.deepEqual(nodeIds(await cache.getService("greeter")), ["n1"], "kept while it re-registers");
    await registry.register(svc("n1", "v1", { back: "yes" }));
    await waitUntil(async () => (await cache.getService("greeter"))[0]!.metadata?.back === "yes", 3000, "the re-registered node");
    await cache.close();
  });

  it("cache: after an outage the registry itself noticed (lastOutage), a lapsed last node is kept while it re-registers", async () => {
    const registry = new ProbeRegistry();
    let outage: number | undefined;
    registry.lastOutage = () => outage;
    const cache = new CacheRegistry(registry, { log: () => {} });
    await registry.register(svc("n1"));
    await cache.getService("greeter");
    // The cache never failed a lookup; the registry's watch saw its server go and come back, empty.
    outage = Date.now();
    await registry.deregister(svc("n1"));
    await waitUntil(() => registry.lookups > 1, 2000, "the cache to check the delete with the registry");
    assert.deepEqual(nodeIds(await cache.getService("greeter")), ["n1"], "kept while it re-registers");
    // Without an outage the same delete is final.
    outage = undefined;
    await registry.register(svc("n2"));
    await waitUntil(async () => nodeIds(await cache.getService("greeter")).includes("n2"), 2000, "n2");
    await registry.deregister(svc("n2"));
    await notFoundWithin(cache, 3000, "not found once nothing is left and there was no outage");
    await cache.close();
  });

  it("cache: a service still missing once the resync grace has passed is not found", async () => {
    const registry = new ProbeRegistry();
    const cache = new CacheRegistry(registry, { resyncGrace: 0.3, log: () => {} });
    await registry.register(svc("n1"));
    await cache.getService("greeter");
    registry.unreachable = true;
    await registry.deregister(svc("n1"));
    await waitUntil(() => registry.lookups > 1, 2000, "the cache to check the delete with the registry");
    registry.unreachable = false;
    const started = Date.now();
    await notFoundWithin(cache, 5000, "not found after the grace");
    assert.ok(Date.now() - started >= 200, "not before the grace passed");
    await cache.close();
  });

  it("cache: a registry error on a miss (nothing cached) reaches the caller", async () => {
    const { registry, cache } = setup();
    registry.unreachable = true;
    await assert.rejects(cache.getService("greeter"), RegistryUnavailableError);
    await cache.close();
  });

  it("cache: stop() ends its watch and leaves the registry usable", async () => {
    const { registry, cache } = setup();
    await registry.register(svc("n1"));
    await cache.getService("greeter");
    cache.stop();
    assert.deepEqual(nodeIds(await registry.getService("greeter")), ["n1"]);
    await registry.close();
  });
});
