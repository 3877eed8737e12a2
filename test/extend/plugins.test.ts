/**
 * Plugins from outside src/: a registry, a broker, a codec and a selector strategy defined in
 * test/extend/plugins (a plugin package as a third party would write it) are registered by
 * importing it and chosen by flags, and its client and handler wrappers by options, with real
 * service processes — no edit in src/.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { FlagError, Service, codecs, registries, selectors } from "../../src/index.ts";
import { startTs, type Proc } from "../helpers/net.ts";
import { B64JSON, callerHeader } from "./plugins/index.ts";

const fixture = fileURLToPath(new URL("./fixtures/ext-service.ts", import.meta.url));
const NATS = "127.0.0.1:4222";

let dir: string;
let flags: string[];
const nodes: Array<{ proc: Proc; id: string }> = [];
let caller: Service;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "tsmicro-dir-registry-"));
  flags = [`--registry=dir://${dir}`, `--broker=stamped://${NATS}`, "--selector=lowest"];
  for (let i = 0; i < 2; i++) {
    const proc = startTs(fixture, flags, { env: { ...process.env, MICRO_LOG_LEVEL: "error" } });
    const line = await proc.waitForLine(/^ready /, 30_000);
    nodes.push({ proc, id: line.split(" ")[1]! });
  }
  caller = new Service({ name: "ext_caller", handleSignals: false, wrapCall: [callerHeader("ext_caller")] }).init(flags);
});

after(async () => {
  await caller?.stop();
  for (const { proc } of nodes) {
    proc.signal("SIGTERM");
    await proc.exited(15_000).catch(() => proc.signal("SIGKILL"));
  }
  await rm(dir, { recursive: true, force: true });
});

test("the plugins are registered by name beside the built-ins", () => {
  assert.ok(registries.has("dir") && registries.has("mdns"));
  assert.ok(selectors.names().includes("lowest") && selectors.names().includes("roundrobin"));
  assert.equal(codecs.get(B64JSON)?.contentType, B64JSON);
  assert.throws(() => new Service().init(["--registry=nope"]), (err: Error) => err instanceof FlagError && /unknown registry "nope" \(known: .*dir.*\)/.test(err.message));
});

test("a registry, a selector, a codec and both wrappers from outside src/ serve a call between processes", async () => {
  assert.equal(String(await caller.registry()), "dir");
  const [record] = await (await caller.registry()).getService("ext_service");
  assert.equal(record!.nodes.length, 2, "both service processes registered in the directory");
  const lowest = [...record!.nodes].sort((a, b) => (a.id < b.id ? -1 : 1))[0]!.id;
  const answers = await Promise.all(Array.from({ length: 12 }, (_, n) => caller.call<Record<string, unknown>>("ext_service", "Ext.Echo", { n }, { contentType: B64JSON })));
  for (const [n, answer] of answers.entries()) {
    // The codec carried request and response; the client wrapper's header reached the handler wrapper.
    assert.deepEqual(answer, { n, node: answer.node, contentType: B64JSON, caller: "ext_caller" });
  }
  // The "lowest" strategy sent every call to one node (random would spread 12 calls over two).
  assert.deepEqual(new Set(answers.map((a) => `ext_service-${String(a.node)}`)), new Set([lowest]));
});

test("a broker from outside src/ carries events between processes", async () => {
  const broker = await caller.broker();
  assert.equal(String(broker), "stamped");
  const lines = nodes.map(({ proc }) => proc.waitForLine(/^event /, 20_000));
  await caller.publish("ext.events", { hello: "davie" });
  for (const line of await Promise.all(lines)) {
    assert.deepEqual(JSON.parse(line.slice("event ".length)), {
      message: { hello: "davie" },
      stamp: "stamped over nats",
      broker: `stamped://${NATS}`,
    });
  }
});
