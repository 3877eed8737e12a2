/** The per-kind plugin registry: names case-insensitive, lazy plugins imported once, replaced by a later register(). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { PluginKind, UnknownPluginError, brokers, registries, selectors, transports, codecs } from "../../src/index.ts";

test("a lazy plugin is imported on first resolve, once for concurrent resolves, and then got without an import", async () => {
  const kind = new PluginKind<string>("thing");
  let imports = 0;
  kind.registerLazy("Lazy", async () => {
    imports++;
    await new Promise((r) => setTimeout(r, 10));
    return "loaded";
  });
  assert.ok(kind.has("lazy") && kind.has("LAZY"));
  assert.equal(kind.get("lazy"), undefined, "not imported yet");
  assert.deepEqual(await Promise.all([kind.resolve("lazy"), kind.resolve("LAZY")]), ["loaded", "loaded"]);
  assert.equal(imports, 1);
  assert.equal(kind.get("lazy"), "loaded");
  kind.register("lazy", "replaced");
  assert.equal(await kind.resolve("lazy"), "replaced");
});

test("a failed lazy import is tried again; an unknown name lists the known ones", async () => {
  const kind = new PluginKind<string>("thing");
  let attempts = 0;
  kind.registerLazy("flaky", async () => {
    if (++attempts === 1) throw new Error("not installed");
    return "ok";
  });
  await assert.rejects(kind.resolve("flaky"), /not installed/);
  assert.equal(await kind.resolve("flaky"), "ok");
  await assert.rejects(kind.resolve("nope"), (err: Error) => err instanceof UnknownPluginError && err.message === 'unknown thing "nope" (known: flaky)');
});

test("the built-ins are registered like any plugin, the optional ones lazily", () => {
  assert.deepEqual(registries.names(), ["consul", "dns", "etcd", "mdns", "memory", "nats", "zookeeper"]);
  assert.deepEqual(brokers.names(), ["googlepubsub", "http", "kafka", "memory", "mqtt", "nats", "nsq", "rabbitmq", "redis"]);
  assert.equal(registries.get("etcd"), undefined, "etcd (and etcd3) not imported until chosen");
  assert.ok(transports.get("tcp") && transports.get("http"));
  assert.ok(selectors.get("random") && selectors.get("roundrobin"));
  assert.equal(codecs.get("application/protobuf")?.contentType, "application/protobuf");
});
