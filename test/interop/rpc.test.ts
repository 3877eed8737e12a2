/**
 * RPC between tsmicro and real go-micro (v4.11 with plugins v4, v5) on registries both share: a Go
 * client calls a tsmicro student_service and a tsmicro client calls a Go one, over go-micro's HTTP
 * transport, with JSON and protobuf bodies, a handler error whose code and detail survive, the
 * caller's Timeout header as the handler's deadline, and a killed node gone within its TTL.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe } from "node:test";
import { create, toJson } from "@bufbuild/protobuf";
import { Client, MicroError, PROTOBUF_TYPE, Service, createRegistry, isNotFound, notFound, type Registry } from "../../src/index.ts";
import { StudentManager, StudentRequestSchema, StudentSchema } from "../../examples/student/gen/student_pb.ts";
import { ETCD_FOR_GO, GO_MICRO_VERSIONS, cell, runPeer, startPeer, type GoMicroVersion } from "./peers.ts";

const DAVIE = { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" };
const ENDPOINT = "StudentManager.GetStudent";

/** A registry both sides share: how tsmicro names it, and go-micro's settings for it. */
interface SharedRegistry {
  row: string;
  tsmicro: string;
  goMicro: Record<string, string>;
}

const REGISTRIES: SharedRegistry[] = [
  { row: "etcd registry", tsmicro: "etcd://127.0.0.1:2379", goMicro: ETCD_FOR_GO },
  { row: "nats registry", tsmicro: "nats://127.0.0.1:4222", goMicro: { MICRO_REGISTRY: "nats", MICRO_REGISTRY_ADDRESS: "127.0.0.1:4222" } },
  { row: "consul registry", tsmicro: "consul://127.0.0.1:8500", goMicro: { MICRO_REGISTRY: "consul", MICRO_REGISTRY_ADDRESS: "127.0.0.1:8500" } },
];

const uniqueName = (what: string) => `interop_${what}_${randomUUID().slice(0, 8)}`;

/** The walkthrough's student_service in tsmicro, with the same cases as the Go one. */
async function startTsStudentService(registry: string, name: string): Promise<Service> {
  const service = new Service({ name, version: "v1.0.0", registry, broker: "memory", registerTTL: 10, registerInterval: 0, handleSignals: false });
  service.handle(StudentManager, {
    getStudent(req, ctx) {
      if (req.name === "davie") return DAVIE;
      if (req.name === "deadline") return { name: "deadline", grade: ctx.deadline === undefined ? -1 : ctx.deadline - Date.now() };
      throw notFound(name, `no student named "${req.name}"`);
    },
  });
  await service.start();
  return service;
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
  for (const version of GO_MICRO_VERSIONS) {
    describe(`${shared.row} · ${version}`, () => {
      let registry: Registry;
      before(async () => {
        registry = await createRegistry(shared.tsmicro);
      });
      after(async () => {
        await registry.close?.();
      });

      cell(shared.row, version, "go client → tsmicro server", async () => {
        const name = uniqueName("students");
        const service = await startTsStudentService(shared.tsmicro, name);
        try {
          const call = (studentName: string, contentType = "application/json") =>
            runPeer(version as GoMicroVersion, { ...shared.goMicro, PEER_MODE: "client", PEER_SERVICE: name, PEER_NAME: studentName, PEER_CONTENT_TYPE: contentType }, ["student", "error"]);
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

      cell(shared.row, version, "go node killed → gone within TTL", async () => {
        const name = uniqueName("doomed");
        const peer = startPeer(version, { ...shared.goMicro, PEER_MODE: "server", PEER_SERVICE: name, MICRO_REGISTER_TTL: "3", MICRO_REGISTER_INTERVAL: "1" });
        try {
          await peer.next((l) => "ready" in l, 20_000, "ready line");
          const [found] = await registry.getService(name);
          assert.equal(found!.nodes[0]!.metadata?.protocol, "mucp");
        } finally {
          await peer.stop("SIGKILL");
        }
        const tookMs = await waitForGone(registry, name, 3000 + 2000);
        assert.ok(tookMs <= 5000, `gone after ${tookMs}ms`);
      });
    });
  }
}
