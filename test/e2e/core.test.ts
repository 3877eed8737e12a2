/** The core issue's end-to-end checks, with real processes on loopback and the mdns registry. */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { randomUUID } from "node:crypto";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { Client, MicroError, createRegistry, type Registry, type WatchEvent } from "../../src/index.ts";
import { FrameKind, encodeFrame } from "../../src/transport/frame.ts";
import HttpBroker from "../../src/broker/http.ts";
import { StudentSchema } from "../../examples/student/gen/student_pb.ts";
import { startTs, waitUntil, within, type Proc } from "../helpers/net.ts";

const fixture = fileURLToPath(new URL("./fixtures/echo-service.ts", import.meta.url));
const example = (part: string) => fileURLToPath(new URL(`../../examples/student/${part}.ts`, import.meta.url));
const quiet = { ...process.env, MICRO_LOG_LEVEL: "error" };

const uniqueName = (what: string) => `${what}_${randomUUID().slice(0, 8)}`;

async function startEcho(name: string, args: string[] = [], env: Record<string, string> = {}): Promise<{ proc: Proc; id: string; address: string }> {
  const proc = startTs(fixture, [`--server_name=${name}`, ...args], { env: { ...quiet, ...env } });
  const line = await proc.waitForLine(/^ready /, 20_000);
  const [, id, address] = line.split(" ");
  return { proc, id: id!, address: address! };
}

/** Resolves with the first watch event matching pred. */
function nextEvent(registry: Registry, service: string, pred: (e: WatchEvent) => boolean): { event: Promise<WatchEvent>; stop: () => void } {
  const watcher = registry.watch({ service });
  const event = (async () => {
    for await (const e of watcher) if (pred(e)) return e;
    throw new Error("watch ended");
  })();
  return { event, stop: () => watcher.stop() };
}

const registries: Registry[] = [];
const clients: Client[] = [];
async function mdnsClient(opts: Partial<ConstructorParameters<typeof Client>[0]> = {}): Promise<{ registry: Registry; client: Client }> {
  const registry = await createRegistry("mdns");
  const client = new Client({ registry, ...opts });
  registries.push(registry);
  clients.push(client);
  return { registry, client };
}
after(async () => {
  for (const c of clients) await c.close();
  for (const r of registries) await r.close();
});

describe("discovery and errors across processes", () => {
  test("two processes find each other through mdns on loopback and call each other", async () => {
    const name = uniqueName("echo");
    const server = await startEcho(name);
    try {
      const client = startTs(fixture.replace("echo-service", "call-once"), [name, "Echo.Call", '{"name":"davie"}'], { env: quiet });
      const out = await client.waitForLine(/^\{/, 20_000);
      assert.deepEqual(JSON.parse(out), { msg: "Hello davie", node: server.id.slice(name.length + 1) });
      assert.equal(await client.exited(), 0);
    } finally {
      server.proc.signal("SIGKILL");
    }
  });

  test("the not-found error matches go-micro's byte for byte", async () => {
    const walkthrough = startTs(example("client"), ["--registry=memory"], { env: quiet });
    assert.equal(await walkthrough.exited(20_000), 1);
    assert.equal(
      walkthrough.stdout().trim(),
      '{"id":"go.micro.client","code":500,"detail":"error selecting student_service node: not found","status":"Internal Server Error"}',
    );
    const name = uniqueName("nobody");
    const { client } = await mdnsClient();
    const err = await client.call(name, "X.Y", {}).then(
      () => assert.fail("call should fail"),
      (e: MicroError) => e,
    );
    assert.equal(JSON.stringify(err), `{"id":"go.micro.client","code":500,"detail":"error selecting ${name} node: not found","status":"Internal Server Error"}`);
  });
});

describe("TTL, replicas and graceful stop", () => {
  test("a SIGKILLed server with --register_ttl=2 --register_interval=1 is gone within the TTL", async () => {
    const name = uniqueName("mortal");
    const { registry } = await mdnsClient();
    const created = nextEvent(registry, name, (e) => e.action === "create");
    const server = await startEcho(name, ["--register_ttl=2", "--register_interval=1"]);
    await within(created.event, 5000, "create event");
    created.stop();
    const deleted = nextEvent(registry, name, (e) => e.action === "delete");
    const killedAt = Date.now();
    server.proc.signal("SIGKILL");
    await within(deleted.event, 5000, "delete event");
    const elapsed = Date.now() - killedAt;
    assert.ok(elapsed <= 2000 + 400, `gone after ${elapsed} ms; TTL is 2000 ms`);
    await assert.rejects(registry.getService(name), /service not found/);
  });

  test("3 replicas under steady load: killing one loses no call", async () => {
    const name = uniqueName("replica");
    const replicas = await Promise.all([1, 2, 3].map(() => startEcho(name, ["--register_ttl=3", "--register_interval=1"])));
    try {
      const { client, registry } = await mdnsClient({ retries: 2, requestTimeout: 2000 });
      await waitUntil(async () => (await registry.getService(name).catch(() => []))[0]?.nodes.length === 3, 10_000, "3 replicas registered");
      const servedBy = new Set<string>();
      let ok = 0;
      const failures: string[] = [];
      let running = true;
      const worker = async () => {
        while (running) {
          try {
            const res = await client.call<{ node: string }>(name, "Echo.Call", { name: "load" });
            servedBy.add(res.node);
            ok++;
          } catch (err) {
            failures.push(String(err));
          }
        }
      };
      const workers = Array.from({ length: 8 }, worker);
      // Kill only once all three served traffic, then keep the load on past the TTL.
      await waitUntil(() => servedBy.size === 3, 10_000, "all replicas serving");
      const okBeforeKill = ok;
      replicas[0]!.proc.signal("SIGKILL");
      await new Promise((r) => setTimeout(r, 4000)); // the load window: TTL 3 s + margin, not a synchronisation
      running = false;
      await Promise.all(workers);
      assert.deepEqual(failures, []);
      assert.ok(ok > okBeforeKill + 100, `calls kept flowing after the kill (${ok - okBeforeKill})`);
    } finally {
      for (const r of replicas) r.proc.signal("SIGKILL");
    }
  });

  test("a lookup in a process busy past its listen window still finds the nodes that answered in time", async () => {
    const name = uniqueName("busy");
    const server = await startEcho(name);
    try {
      const { registry } = await mdnsClient();
      await registry.getService(name); // warm: the next lookup sends its question at once
      const lookup = registry.getService(name);
      // Busy from just after the question until well past the 150 ms listen window: the answer
      // arrives meanwhile, and the next turn of the event loop runs the window's timer before it
      // reads the socket.
      setImmediate(() => {
        const until = Date.now() + 400;
        while (Date.now() < until);
      });
      const [service] = await lookup;
      assert.equal(service?.nodes.length, 1);
    } finally {
      server.proc.signal("SIGKILL");
    }
  });

  test("a watcher in a process busy past a node's TTL does not lose the node whose announcements wait unread", async () => {
    const name = uniqueName("starved");
    const { registry } = await mdnsClient();
    const created = nextEvent(registry, name, (e) => e.action === "create");
    const server = await startEcho(name, ["--register_ttl=2", "--register_interval=1"]);
    try {
      await within(created.event, 5000, "create event");
      created.stop();
      const deleted = nextEvent(registry, name, (e) => e.action === "delete");
      let lost = false;
      void deleted.event.then(() => (lost = true), () => {});
      // Busy for 1.5 TTLs while the node keeps announcing itself every second, in the loop's check
      // phase: the timers (the expiry sweep) run next, before the announcements are read.
      await new Promise<void>((resolve) =>
        setImmediate(() => {
          const until = Date.now() + 3000;
          while (Date.now() < until);
          resolve();
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 1000)); // a window for a wrong delete to show, not a synchronisation
      deleted.stop();
      assert.equal(lost, false, "the node was dropped while its announcements waited unread");
      assert.equal((await registry.getService(name))[0]?.nodes.length, 1);
    } finally {
      server.proc.signal("SIGKILL");
    }
  });

  test("the default broker over mdns waits for one lookup of a topic nobody subscribes to, not one per publish; a later subscriber gets events", async () => {
    const { registry } = await mdnsClient();
    let lookups = 0;
    const counted = new Proxy(registry, {
      get(target, key) {
        const value = Reflect.get(target, key, target) as unknown;
        if (typeof value !== "function") return value;
        if (key === "getService") return (...args: unknown[]) => (lookups++, (value as (...a: unknown[]) => unknown).apply(target, args));
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
    const publisher = new HttpBroker({ registry: counted });
    const subscriber = new HttpBroker({ registry: (await mdnsClient()).registry });
    await Promise.all([publisher.connect(), subscriber.connect()]);
    try {
      const topic = uniqueName("quiet");
      await subscriber.subscribe(`${topic}.other`, () => {}); // the broker service is in the registry, without the topic
      await publisher.publish(topic, { header: {}, body: Buffer.from("first") });
      const afterFirst = lookups;
      assert.ok(afterFirst >= 1, "the first publish looked the topic up");
      for (let i = 0; i < 20; i++) await publisher.publish(topic, { header: {}, body: Buffer.from(String(i)) });
      assert.equal(lookups, afterFirst, "20 more publishes asked mdns again (150 ms each)");

      const got: string[] = [];
      await subscriber.subscribe(topic, (e) => void got.push(Buffer.from(e.message.body).toString()));
      await waitUntil(
        async () => {
          await publisher.publish(topic, { header: {}, body: Buffer.from("late") });
          return got.includes("late");
        },
        5000,
        "the new subscriber gets events (through the cache's watch)",
      );
    } finally {
      await Promise.all([publisher.disconnect(), subscriber.disconnect()]);
    }
  });

  test("SIGTERM deregisters at once and finishes in-flight calls", async () => {
    const name = uniqueName("graceful");
    const server = await startEcho(name);
    const { client, registry } = await mdnsClient({ retries: 0 });
    await registry.getService(name);
    const deleted = nextEvent(registry, name, (e) => e.action === "delete");
    const inflight = client.call<{ slept: number }>(name, "Echo.Slow", { ms: 1500 });
    await server.proc.waitForLine(/slow call started/, 5000);
    const stopAt = Date.now();
    server.proc.signal("SIGTERM");
    await within(deleted.event, 1000, "deregistration");
    const deregisteredAfter = Date.now() - stopAt;
    assert.deepEqual((await within(inflight, 5000, "in-flight call")).slept, 1500);
    assert.ok(deregisteredAfter < 1000, `deregistered after ${deregisteredAfter} ms`);
    assert.equal(await server.proc.exited(5000), 0);
  });
});

describe("bad input never kills the server", () => {
  const limit = 64 * 1024;
  let server: { proc: Proc; address: string; id: string };
  let port: number;
  const name = uniqueName("sturdy");

  const post = (path: string, headers: Record<string, string>, body: Buffer | string) =>
    new Promise<{ status: number; body: string; error?: string }>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, method: "POST", path, headers: { "Content-Length": Buffer.byteLength(body), ...headers } }, (res) => {
        let data = "";
        res.on("data", (c) => (data += c));
        res.on("end", () => resolve({ status: res.statusCode!, body: data, error: res.headers["micro-error"] as string | undefined }));
      });
      req.on("error", reject);
      req.end(body);
    });

  const stillServing = async () => {
    const res = await post("/", { "Micro-Endpoint": "Echo.Call", "Content-Type": "application/json" }, '{"name":"ok"}');
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).msg, "Hello ok");
  };

  test("start a server with tight limits", async () => {
    server = await startEcho(name, [], { FIXTURE_MAX_MESSAGE_SIZE: String(limit), FIXTURE_READ_TIMEOUT: "500" });
    port = Number(server.address.split(":").pop());
    await stillServing();
  });

  test("malformed JSON → 400", async () => {
    const res = await post("/", { "Micro-Endpoint": "Echo.Call", "Content-Type": "application/json" }, "{not json");
    assert.equal(res.status, 400);
    const err = JSON.parse(res.body);
    assert.equal(err.code, 400);
    assert.match(err.detail, /invalid request body for Echo\.Call/);
    assert.deepEqual(JSON.parse(res.error!), err);
    await stillServing();
  });

  test("malformed protobuf → 400, a valid one is answered", async () => {
    const bad = await post("/Echo.Student", { "Content-Type": "application/protobuf" }, Buffer.from([0x0a, 0xff, 0xff, 0xff]));
    assert.equal(bad.status, 400);
    assert.match(JSON.parse(bad.body).detail, /invalid request body for Echo\.Student/);
    const student = create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" });
    const { client } = await mdnsClient();
    const res = await client.call(name, "Echo.Student", student, { contentType: "application/protobuf", requestSchema: StudentSchema, responseSchema: StudentSchema });
    assert.equal((res as { grade: number }).grade, 81);
    assert.ok(toBinary(StudentSchema, student).length > 0);
    await stillServing();
  });

  test("unknown endpoint → 404 naming it", async () => {
    const res = await post("/", { "Micro-Endpoint": "Echo.Nope", "Content-Type": "application/json" }, "{}");
    assert.equal(res.status, 404);
    assert.match(JSON.parse(res.body).detail, /Echo\.Nope/);
    const { client } = await mdnsClient();
    await assert.rejects(client.call(name, "Nope.Nope", {}), (e: MicroError) => e.code === 404 && /Nope\.Nope/.test(e.detail));
    await stillServing();
  });

  test("handler throw → 500 with its message and no stack", async () => {
    const { client } = await mdnsClient();
    const err = await client.call(name, "Echo.Fail", { message: "database on fire" }).then(
      () => assert.fail("should fail"),
      (e: MicroError) => e,
    );
    assert.deepEqual(err.toJSON(), { id: name, code: 500, detail: "database on fire", status: "Internal Server Error" });
    await stillServing();
  });

  test("body over the limit → 413, over HTTP and over the tcp transport", async () => {
    const res = await post("/", { "Micro-Endpoint": "Echo.Call", "Content-Type": "application/json" }, JSON.stringify({ name: "x".repeat(limit) }));
    assert.equal(res.status, 413);
    const { client } = await mdnsClient();
    await assert.rejects(client.call(name, "Echo.Call", { name: "x".repeat(limit) }), (e: MicroError) => e.code === 413);
    // The same pooled tcp connection still works after the oversized frame was skipped.
    assert.equal((await client.call<{ msg: string }>(name, "Echo.Call", { name: "after" })).msg, "Hello after");
    await stillServing();
  });

  test("a client that stalls mid-request is cut off (tcp frame and HTTP)", async () => {
    const stall = (bytes: Buffer) =>
      new Promise<number>((resolve, reject) => {
        const started = Date.now();
        const sock = net.connect({ port, host: "127.0.0.1" }, () => sock.write(bytes));
        sock.on("error", () => {});
        sock.on("close", () => resolve(Date.now() - started));
        setTimeout(() => reject(new Error("stalled connection was not closed")), 5000).unref();
      });
    const frame = encodeFrame(FrameKind.Request, 1, { "Micro-Endpoint": "Echo.Call" }, Buffer.from('{"name":"stall"}'));
    const tcpMs = await stall(frame.subarray(0, frame.length - 5));
    const httpMs = await stall(Buffer.from("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"));
    assert.ok(tcpMs >= 400 && tcpMs < 4000, `tcp stall cut after ${tcpMs} ms`);
    assert.ok(httpMs >= 400 && httpMs < 4000, `http stall cut after ${httpMs} ms`);
    await stillServing();
  });

  test("stop the server", async () => {
    server.proc.signal("SIGTERM");
    assert.equal(await server.proc.exited(5000), 0);
  });
});

describe("flags", () => {
  const badFlag = async (args: string[], env: Record<string, string>, expect: RegExp) => {
    const p = startTs(example("server"), args, { env: { ...quiet, ...env } });
    assert.equal(await p.exited(20_000), 2);
    const lines = p.stderr().trim().split("\n");
    assert.equal(lines.length, 1, `one line, got: ${p.stderr()}`);
    assert.match(lines[0]!, expect);
    assert.equal(p.stdout(), "");
  };
  test("--register_ttl=abc → one line naming the flag, exit 2", () => badFlag(["--register_ttl=abc"], {}, /--register_ttl/));
  test("--registry=nope → one line naming the flag, exit 2", () => badFlag(["--registry=nope"], {}, /--registry.*"nope"/));
  test("an unknown flag → exit 2", () => badFlag(["--registyr=mdns"], {}, /unknown flag --registyr/));
  test("MICRO_REGISTER_INTERVAL=soon → one line naming the variable, exit 2", () => badFlag([], { MICRO_REGISTER_INTERVAL: "soon" }, /MICRO_REGISTER_INTERVAL/));
  // Registration times that would let a running node drop out of the registry.
  test("--register_ttl=0 → exit 2", () => badFlag(["--register_ttl=0"], {}, /--register_ttl: "0" is not a whole number ≥ 1/));
  test("--register_interval=0 → exit 2", () => badFlag(["--register_interval=0"], {}, /--register_interval: "0" is not a whole number ≥ 1/));
  test("--register_interval=10 --register_ttl=5 → exit 2", () =>
    badFlag(["--register_interval=10", "--register_ttl=5"], {}, /invalid --register_interval=10: the register interval must be shorter than the TTL.*--register_ttl=5/));
  test("--register_interval past Node's timer limit (renewals in a loop) → exit 2", () =>
    badFlag(["--register_interval=3000000", "--register_ttl=4000000"], {}, /invalid --register_interval=3000000: the register interval must be at most 2147483647 ms/));
  test("MICRO_REGISTER_INTERVAL=60 over the default TTL → exit 2 naming the variable", () =>
    badFlag([], { MICRO_REGISTER_INTERVAL: "60" }, /invalid MICRO_REGISTER_INTERVAL=60: .*registerTTL 60000 ms/));
});
