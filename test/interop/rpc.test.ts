/**
 * RPC between tsmicro and real go-micro (v4.11 with plugins v4, v5) on registries both share: a Go
 * client calls a tsmicro student_service and a tsmicro client calls a Go one, over go-micro's HTTP
 * transport, with JSON and protobuf bodies, a handler error whose code and detail survive, the
 * caller's Timeout header as the handler's deadline, a handler that overruns it (the caller gets a
 * 408, the handler sees its deadline pass), and a killed node gone within its TTL.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import type { NatsRegistryOptions } from "../../src/registry/nats.ts";
import { after, before, describe } from "node:test";
import { create, toJson } from "@bufbuild/protobuf";
import { Client, MicroError, PROTOBUF_TYPE, Service, createRegistry, isNotFound, notFound, type Registry } from "../../src/index.ts";
import { StudentManager, StudentRequestSchema, StudentSchema } from "../../examples/student/gen/student_pb.ts";
import { within } from "../helpers/net.ts";
import { ETCD_FOR_GO, GO_MICRO_VERSIONS, cell, runPeer, startPeer, type GoMicroVersion } from "./peers.ts";

const DAVIE = { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" };
const ENDPOINT = "StudentManager.GetStudent";

/** A registry both sides share: how tsmicro names it, and go-micro's settings for it. */
interface SharedRegistry {
  row: string;
  tsmicro: string;
  goMicro: Record<string, string>;
  /** go-micro versions that have this registry (default all). */
  versions?: GoMicroVersion[];
  /** Why a killed Go node stays registered, where go-micro's registry has no TTL. */
  goNodeOutlivesKill?: string;
}

const REGISTRIES: SharedRegistry[] = [
  { row: "etcd registry", tsmicro: "etcd://127.0.0.1:2379", goMicro: ETCD_FOR_GO },
  { row: "nats registry", tsmicro: "nats://127.0.0.1:4222", goMicro: { MICRO_REGISTRY: "nats", MICRO_REGISTRY_ADDRESS: "127.0.0.1:4222" } },
  { row: "consul registry", tsmicro: "consul://127.0.0.1:8500", goMicro: { MICRO_REGISTRY: "consul", MICRO_REGISTRY_ADDRESS: "127.0.0.1:8500" } },
  {
    row: "zookeeper registry",
    tsmicro: "zookeeper://127.0.0.1:2181",
    goMicro: { MICRO_REGISTRY: "zookeeper", MICRO_REGISTRY_ADDRESS: "127.0.0.1:2181" },
    versions: ["v4"],
    goNodeOutlivesKill: "go-micro's zookeeper registry writes persistent znodes and has no TTL",
  },
];

const uniqueName = (what: string) => `interop_${what}_${randomUUID().slice(0, 8)}`;

const REGISTER_NODE = fileURLToPath(new URL("../helpers/register-node.ts", import.meta.url));

/**
 * A Go client's call to a node that is registered. go-micro's nats registry gives answers 100 ms
 * (not configurable by flag); on a loaded machine a lookup may miss the node: tried up to 3 times.
 */
async function goCall(version: GoMicroVersion, shared: SharedRegistry, env: Record<string, string>) {
  for (let attempt = 1; ; attempt++) {
    const line = await runPeer(version, { ...shared.goMicro, PEER_MODE: "client", ...env }, ["student", "error"]);
    if (attempt >= 3 || !/not found|none available/.test(line.error?.detail ?? "")) return line;
  }
}

/** One call by a fresh Go client (no cache): what go-micro's selector makes of the registry now. */
const goLookup = (version: GoMicroVersion, shared: SharedRegistry, name: string) =>
  runPeer(version, { ...shared.goMicro, PEER_MODE: "client", PEER_SERVICE: name, PEER_TIMEOUT_MS: "500", MICRO_CLIENT_RETRIES: "0" }, ["student", "error"]);

/** How a tsmicro handler's overrun ended: whether ctx.signal was aborted, and the ms from its start. */
interface SlowEnd {
  aborted: boolean;
  tookMs: number;
  /** The deadline the caller set, in ms from the handler's start. */
  budgetMs: number;
}

/** The walkthrough's student_service in tsmicro, with the same cases as the Go one. */
async function startTsStudentService(registry: string, name: string, onSlowEnd?: (end: SlowEnd) => void): Promise<Service> {
  const service = new Service({ name, version: "v1.0.0", registry, broker: "memory", registerTTL: 10_000, registerInterval: 5_000, handleSignals: false });
  service.handle(StudentManager, {
    getStudent(req, ctx) {
      if (req.name === "davie") return DAVIE;
      if (req.name === "deadline") return { name: "deadline", grade: ctx.deadline === undefined ? -1 : ctx.deadline - Date.now() };
      if (req.name === "slow") return overrun(ctx, onSlowEnd);
      throw notFound(name, `no student named "${req.name}"`);
    },
  });
  await service.start();
  return service;
}

/** Overruns the caller's deadline: waits for ctx.signal (at most 10 s) and reports how it ended. */
async function overrun(ctx: { signal?: AbortSignal; deadline?: number }, onEnd?: (end: SlowEnd) => void) {
  const started = Date.now();
  const budgetMs = (ctx.deadline ?? Number.NaN) - started;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    ctx.signal?.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });
  onEnd?.({ aborted: !!ctx.signal?.aborted, tookMs: Date.now() - started, budgetMs });
  return { name: "slow" };
}

/** getService until the service is there (bounded): a nats lookup listens 100 ms for answers. */
async function eventuallyFound(registry: Registry, name: string, withinMs = 5000) {
  const started = Date.now();
  for (;;) {
    try {
      return await registry.getService(name);
    } catch (err) {
      if (!isNotFound(err) || Date.now() - started > withinMs) throw err;
    }
  }
}

async function waitForGone(registry: Registry, name: string, withinMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    try {
      await registry.getService(name);
    } catch (err) {
      if (isNotFound(err)) return Date.now() - started;
      throw err;
    }
    if (Date.now() - started > withinMs) assert.fail(`${name} still registered after ${withinMs}ms`);
    await new Promise((r) => setTimeout(r, 250)); // polling the registry: there is no event for "expired" in every registry
  }
}

for (const shared of REGISTRIES) {
  for (const version of shared.versions ?? GO_MICRO_VERSIONS) {
    describe(`${shared.row} · ${version}`, () => {
      let registry: Registry;
      before(async () => {
        // nats: lookups listen 500 ms for answers (100 ms by default), for a loaded machine.
        registry = await createRegistry<NatsRegistryOptions>(shared.tsmicro, { queryTimeout: 500 });
      });
      after(async () => {
        await registry.close?.();
      });

      cell(shared.row, version, "go client → tsmicro server", async () => {
        const name = uniqueName("students");
        const service = await startTsStudentService(shared.tsmicro, name);
        try {
          const call = (studentName: string, contentType = "application/json") =>
            goCall(version, shared, { PEER_SERVICE: name, PEER_NAME: studentName, PEER_CONTENT_TYPE: contentType });
          assert.deepEqual(await call("davie"), { student: DAVIE }, "JSON body");
          assert.deepEqual(await call("davie", PROTOBUF_TYPE), { student: DAVIE }, "protobuf body");
          assert.deepEqual(await call("nobody"), { error: { id: name, code: 404, detail: 'no student named "nobody"', status: "Not Found" } }, "a handler error keeps its id, code and detail");
          const { student } = await call("deadline", PROTOBUF_TYPE);
          assert.ok(student.grade > 0 && student.grade <= 5000, `the handler's deadline is the Go client's Timeout (≤ 5 s): ${student.grade}ms left`);
        } finally {
          await service.stop();
        }
      });

      cell(shared.row, version, "tsmicro client → go server", async () => {
        const name = uniqueName("students");
        const peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "server", PEER_SERVICE: name });
        const client = new Client({ registry });
        try {
          await peer.next((l) => "ready" in l, 20_000, "ready line");
          assert.deepEqual(await client.call(name, ENDPOINT, { name: "davie" }), DAVIE, "JSON body");
          const proto = await client.call(name, ENDPOINT, create(StudentRequestSchema, { name: "davie" }), {
            contentType: PROTOBUF_TYPE,
            requestSchema: StudentRequestSchema,
            responseSchema: StudentSchema,
          });
          assert.deepEqual(toJson(StudentSchema, proto as never), DAVIE, "protobuf body");
          const err = await client.call(name, ENDPOINT, { name: "nobody" }).then(
            () => assert.fail("nobody should not be found"),
            (e: MicroError) => e,
          );
          assert.ok(err instanceof MicroError);
          assert.deepEqual(err.toJSON(), { id: name, code: 404, detail: 'no student named "nobody"', status: "Not Found" }, "the Go handler's error keeps its id, code and detail");
          const left = await client.call<{ grade: number }>(name, ENDPOINT, { name: "deadline" }, { requestTimeout: 800 });
          assert.ok(left.grade > 0 && left.grade <= 800, `the Go handler's deadline is our 800ms Timeout: ${left.grade}ms left`);
        } finally {
          await client.close();
          await peer.stop();
        }
      });

      cell(shared.row, version, "go client → tsmicro handler overrunning its timeout: 408", async () => {
        const name = uniqueName("slow");
        let slowEnded!: (end: SlowEnd) => void;
        const slowEnd = new Promise<SlowEnd>((resolve) => (slowEnded = resolve));
        const service = await startTsStudentService(shared.tsmicro, name, slowEnded);
        try {
          const started = Date.now();
          const { error } = await goCall(version, shared, { PEER_SERVICE: name, PEER_NAME: "slow", PEER_TIMEOUT_MS: "1000", MICRO_CLIENT_RETRIES: "0" });
          assert.equal(error?.code, 408, `the Go client times out with go-micro's 408: ${JSON.stringify(error)}`);
          // go-micro sends its dial timeout (5 s by default) as Timeout, not the request timeout.
          const end = await within(slowEnd, 15_000, "the tsmicro handler's end");
          assert.ok(end.aborted, "the tsmicro handler's ctx.signal is aborted");
          assert.ok(end.budgetMs > 0 && end.budgetMs <= 5000, `the handler's deadline is the Go client's Timeout (≤ 5 s): ${end.budgetMs}ms`);
          // Aborted when the Go client gives up (its 1 s request timeout closes the request), at the latest at that deadline.
          assert.ok(end.tookMs >= 900 && end.tookMs < end.budgetMs + 1000, `aborted once the caller gave up: after ${end.tookMs}ms (deadline ${end.budgetMs}ms)`);
          assert.ok(Date.now() - started < 15_000);
        } finally {
          await service.stop();
        }
      });

      cell(shared.row, version, "tsmicro client → go handler overrunning its timeout: 408", async () => {
        const name = uniqueName("slow");
        const peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "server", PEER_SERVICE: name });
        const client = new Client({ registry });
        try {
          await peer.next((l) => "ready" in l, 20_000, "ready line");
          await eventuallyFound(registry, name);
          const started = Date.now();
          const err = await client.call(name, ENDPOINT, { name: "slow" }, { requestTimeout: 800, retries: 0 }).then(
            () => assert.fail("the slow call should time out"),
            (e: MicroError) => e,
          );
          const tookMs = Date.now() - started;
          assert.ok(err instanceof MicroError, String(err));
          assert.equal(err.code, 408, `tsmicro's client times out with 408: ${JSON.stringify(err)}`);
          assert.ok(tookMs >= 750 && tookMs < 3000, `after the 800ms request timeout: ${tookMs}ms`);
          const end = await peer.next((l) => "slow" in l, 5_000, "the Go handler's end");
          // Its deadline (our Timeout header: what is left of the call's 800 ms once a node is selected)
          // passes, or the HTTP server cancels it as our client drops the request.
          assert.match(end.ctxErr, /^context (deadline exceeded|canceled)$/, "the Go handler's ctx ends");
          assert.ok(end.slow > 0 && end.slow < 2000, `the Go handler's ctx ends by our 800ms timeout: after ${end.slow}ms`);
        } finally {
          await client.close();
          await peer.stop();
        }
      });

      if (!shared.goNodeOutlivesKill) cell(shared.row, version, "go node killed → gone within TTL", async () => {
        const name = uniqueName("doomed");
        const peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "server", PEER_SERVICE: name, MICRO_REGISTER_TTL: "3", MICRO_REGISTER_INTERVAL: "1" });
        try {
          await peer.next((l) => "ready" in l, 20_000, "ready line");
          const [found] = await eventuallyFound(registry, name);
          assert.equal(found!.nodes[0]!.metadata?.protocol, "mucp");
        } finally {
          await peer.stop("SIGKILL");
        }
        const tookMs = await waitForGone(registry, name, 3000 + 2000);
        assert.ok(tookMs <= 5000, `gone after ${tookMs}ms`);
      });

      cell(shared.row, version, "tsmicro node killed → gone within TTL", async () => {
        const name = uniqueName("doomed");
        const nodeId = `${name}-${randomUUID()}`;
        // A tsmicro process registering one node (TTL 3 s, renewed every 1 s), then SIGKILLed.
        const child = spawn(process.execPath, ["--import", "tsx", REGISTER_NODE, shared.tsmicro, name, nodeId, "3", "1"], { stdio: ["ignore", "pipe", "inherit"] });
        const exited = once(child, "exit");
        try {
          await within(once(child.stdout!, "data"), 20_000, "the tsmicro node's first registration");
          const seen = await goLookup(version, shared, name);
          assert.equal(seen.error?.code, 500, "the node is found (the call fails to connect to its placeholder address, not to select it)");
          assert.doesNotMatch(seen.error.detail, /not found/);
        } finally {
          child.kill("SIGKILL");
          await exited;
        }
        const killedAt = Date.now();
        for (;;) {
          const { error } = await goLookup(version, shared, name);
          // go-micro says "not found" for a service without entries, "none available" for one whose entries all failed their checks.
          if (/not found|none available/.test(error?.detail ?? "")) break;
          assert.ok(Date.now() - killedAt < 3000 + 3000, `go-micro still selects the killed node after ${Date.now() - killedAt}ms`);
        }
      });
    });
  }
}
