/** A library never takes over the process: flags only on init(), typed start-up failures, no exits. */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";
import { importOptional } from "../../src/cmd/optional-package.ts";
import { HelpRequested, MissingPackageError, Service, StartupError } from "../../src/index.ts";

test("without init() neither argv nor MICRO_* is read", () => {
  process.env.MICRO_REGISTRY = "etcd";
  try {
    assert.equal(new Service().options().registry, "mdns");
    assert.equal(new Service().init([]).options().registry, "etcd");
  } finally {
    delete process.env.MICRO_REGISTRY;
  }
});

test("init() throws instead of exiting; allowUnknown leaves the program's own flags", () => {
  assert.throws(() => new Service().init(["--port=3000"]), /unknown flag --port/);
  assert.throws(() => new Service().init(["--help"]), HelpRequested);
  const s = new Service().init(["--port=3000", "--registry=memory", "--help", "x"], { allowUnknown: true });
  assert.deepEqual(s.args, ["--port=3000", "--help", "x"]);
  assert.equal(s.options().registry, "memory");
});

test("a missing client library names the package and the tested range", async () => {
  const err = await importOptional("mqtt-not-installed-here", "mqtt").catch((e: unknown) => e);
  assert.ok(err instanceof MissingPackageError);
  assert.match(err.message, /npm install mqtt-not-installed-here$/);
  assert.match(new MissingPackageError("mqtt", "mqtt").message, /npm install mqtt@\^5\.\d+\.\d+$/);
});

test("a port in use is a StartupError with a cause; start() rolls back and can be retried", async (t) => {
  const taken = createServer().listen(0, "127.0.0.1");
  await new Promise((resolve) => taken.once("listening", resolve));
  const { port } = taken.address() as { port: number };
  const service = new Service({ name: "startup_port", address: `127.0.0.1:${port}`, registry: "memory", broker: "memory", handleSignals: false });
  service.handle("Echo.Call", (req: unknown) => req);
  const err = await service.start().catch((e: unknown) => e);
  assert.ok(err instanceof StartupError, String(err));
  assert.match(err.message, new RegExp(`^startup_port: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
  assert.ok(err.cause instanceof Error);
  await new Promise((resolve) => taken.close(resolve));
  await service.start();
  t.after(() => service.stop());
  assert.deepEqual(await service.call("startup_port", "Echo.Call", { a: 1 }), { a: 1 });
});

test("an unknown plugin and an unreachable broker are StartupErrors", async () => {
  const unknown = new Service({ name: "startup_plugin", registry: "memory", broker: "nope", handleSignals: false });
  await assert.rejects(unknown.start(), (err: Error) => err instanceof StartupError && /cannot create the broker "nope": unknown broker "nope"/.test(err.message));
  const closed = createServer().listen(0, "127.0.0.1");
  await new Promise((resolve) => closed.once("listening", resolve));
  const { port } = closed.address() as { port: number };
  await new Promise((resolve) => closed.close(resolve));
  const unreachable = new Service({ name: "startup_broker", registry: "memory", broker: `nats://127.0.0.1:${port}`, handleSignals: false });
  await assert.rejects(unreachable.start(), (err: Error) => err instanceof StartupError && /cannot connect to the nats broker/.test(err.message) && err.cause !== undefined);
});

test("subscribe() returns a handle that unsubscribes; subscriptions and handlers added after start() are advertised", async (t) => {
  const name = `late_${Date.now()}`;
  const service = new Service({ name, registry: "memory", broker: "memory", handleSignals: false });
  const got: string[] = [];
  const before = await service.subscribe<{ n: string }>("late.topic", (m) => void got.push(`before:${m.n}`));
  await service.start();
  t.after(() => service.stop());
  const afterStart = await service.subscribe<{ n: string }>("late.topic", (m) => void got.push(`after:${m.n}`));
  await service.publish("late.topic", { n: "1" });
  // Each subscription is advertised as go-micro advertises a subscriber, and stops being once ended.
  const advertisedTopics = async () => (await service.describe()).endpoints!.filter((e) => e.name === "Func" && e.metadata?.subscriber === "true").map((e) => e.metadata!.topic);
  assert.deepEqual(await advertisedTopics(), ["late.topic", "late.topic"]);
  await before.unsubscribe();
  await service.publish("late.topic", { n: "2" });
  await afterStart.unsubscribe();
  assert.deepEqual(await advertisedTopics(), []);
  await service.publish("late.topic", { n: "3" });
  assert.deepEqual(got.sort(), ["after:1", "after:2", "before:1"]);

  const watcher = (await service.registry()).watch({ service: name });
  t.after(() => watcher.stop());
  service.handle("Late.Added", () => ({ ok: true }));
  // The re-registrations of the unsubscribes above may still be on their way: wait for the one with Late.Added.
  let update = await watcher.next();
  while (!update.service.endpoints?.some((e) => e.name === "Late.Added")) update = await watcher.next();
  assert.equal(update.action, "update");
  assert.deepEqual(await service.call(name, "Late.Added", {}), { ok: true });
});
