/**
 * The proto layer across processes: the walkthrough's generated StudentManager served by
 * examples/student/server.ts, called by typed clients, by curl-style HTTP and by the walkthrough's
 * client; bad bodies; registry shapes; typed events between the walkthrough's publisher and subscriber.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Client, JSON_TYPE, MicroError, PROTOBUF_TYPE, createClient, createRegistry, describeMessage, type Endpoint, type Registry } from "../../src/index.ts";
import { TcpClientTransport } from "../../src/transport/tcp.ts";
import { StudentManager, StudentRequestSchema, StudentSchema } from "../../examples/student/gen/student_pb.ts";
import { startTs, waitUntil, within, type Proc } from "../helpers/net.ts";

const example = (part: string) => fileURLToPath(new URL(`../../examples/student/${part}.ts`, import.meta.url));
const quiet = { ...process.env, MICRO_LOG_LEVEL: "error" };

const davie = create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" });
const DAVIE_JSON = '{"name":"davie","classes":"软件工程专业","grade":80,"phone":"12345678901"}';
const ENDPOINT = "StudentManager.GetStudent";

/** Malformed protobuf bodies for StudentRequest, each for a different reason. */
const MALFORMED: Array<[string, number[]]> = [
  ["a length running past the end", [0x0a, 0xff]],
  ["a string that is not UTF-8", [0x0a, 0x02, 0xc3, 0x28]],
  ["bytes that are no field at all", [0xff, 0xff, 0xff]],
];

let server: Proc;
let address: string;
let nodeId: string;
let registry: Registry;
const clients: Client[] = [];

/** A client of the one server process, by address (no registry lookup between it and the server). */
function studentsOver(transport: "tcp" | "http") {
  const client = new Client({ registry, transport });
  clients.push(client);
  return createClient(StudentManager, "student_service", client, { address, requestTimeout: 5000 });
}

/** A curl-style request: a plain HTTP POST to the node address with go-micro's headers. */
function post(contentType: string, body: string | Uint8Array<ArrayBuffer>, path = "/", headers: Record<string, string> = { "Micro-Endpoint": ENDPOINT }) {
  return fetch(`http://${address}${path}`, {
    method: "POST",
    headers: { "Content-Type": contentType, ...headers },
    body,
    signal: AbortSignal.timeout(5000),
  });
}

before(async () => {
  registry = await createRegistry("memory");
  server = startTs(example("server"), [], { env: quiet });
  const line = await server.waitForLine(/^student_service v1\.0\.0 ready at /, 20_000);
  [, address, nodeId] = /ready at (\S+) as (\S+) \(registry mdns\)$/.exec(line)!;
});

after(async () => {
  for (const c of clients) await c.close();
  await registry.close();
  server.signal("SIGTERM");
  await server.exited(15_000).catch(() => server.signal("SIGKILL"));
});

describe("generated client against the server process", () => {
  for (const transport of ["tcp", "http"] as const) {
    test(`typed Student back over ${transport}, by protobuf and by JSON`, async () => {
      const students = studentsOver(transport);
      for (const contentType of [PROTOBUF_TYPE, JSON_TYPE]) {
        const student = await within(students.getStudent({ name: "davie" }, { contentType }), 10_000, `getStudent as ${contentType}`);
        assert.equal(student.$typeName, "student.Student");
        assert.ok(equals(StudentSchema, student, davie), `${contentType} over ${transport} gave ${JSON.stringify(student)}`);
      }
    });
  }

  test("a handler's error arrives as the MicroError it threw", async () => {
    await assert.rejects(within(studentsOver("tcp").getStudent({ name: "nobody" }), 10_000, "getStudent"), (e: unknown) => {
      assert.ok(e instanceof MicroError);
      assert.deepEqual(e.toJSON(), { id: "student_service", code: 404, detail: 'no student named "nobody"', status: "Not Found" });
      return true;
    });
  });

  test("the walkthrough's client finds the server through mdns and prints the student, or the error", async () => {
    const found = startTs(example("client"), [], { env: quiet });
    assert.equal(await found.exited(20_000), 0, found.stderr());
    assert.equal(found.stdout(), `${DAVIE_JSON}\n`);
    const missing = startTs(example("client"), ["nobody"], { env: quiet });
    assert.equal(await missing.exited(20_000), 1, missing.stderr());
    assert.equal(missing.stdout(), '{"id":"student_service","code":404,"detail":"no student named \\"nobody\\"","status":"Not Found"}\n');
  });

  test("the registry record carries the endpoint's request and response shapes", async () => {
    const mdns = await createRegistry("mdns");
    try {
      let endpoint: Endpoint | undefined;
      await waitUntil(
        async () => {
          const nodes = (await mdns.getService("student_service")).filter((s) => s.nodes.some((n) => n.id === nodeId));
          endpoint = nodes[0]?.endpoints?.find((e) => e.name === ENDPOINT);
          return endpoint !== undefined;
        },
        10_000,
        `${ENDPOINT} of ${nodeId} in mdns`,
        200,
      );
      assert.deepEqual(endpoint, {
        name: ENDPOINT,
        request: describeMessage(StudentRequestSchema),
        response: describeMessage(StudentSchema),
        metadata: {},
      });
    } finally {
      await mdns.close();
    }
  });
});

describe("plain HTTP to the node address (curl)", () => {
  test("JSON in, proto3 JSON out", async () => {
    const res = await post(JSON_TYPE, '{"name":"davie"}');
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    assert.equal(await res.text(), DAVIE_JSON);
  });

  test("protobuf in, the same Student out as protobuf bytes", async () => {
    const res = await post(PROTOBUF_TYPE, toBinary(StudentRequestSchema, create(StudentRequestSchema, { name: "davie" })));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), PROTOBUF_TYPE);
    const body = new Uint8Array(await res.arrayBuffer());
    assert.deepEqual(body, toBinary(StudentSchema, davie));
    assert.ok(equals(StudentSchema, fromBinary(StudentSchema, body), davie));
  });

  test("the endpoint as the path; unknown JSON keys are ignored", async () => {
    const res = await post(JSON_TYPE, '{"name":"davie","unknownField":true}', `/${ENDPOINT}`, {});
    assert.equal(res.status, 200);
    assert.equal(await res.text(), DAVIE_JSON);
  });
});

describe("bad request bodies → 400, and the server keeps serving", () => {
  for (const [why, bytes] of MALFORMED) {
    test(`protobuf over HTTP: ${why}`, async () => {
      const res = await post(PROTOBUF_TYPE, new Uint8Array(bytes));
      assert.equal(res.status, 400);
      const err = (await res.json()) as { id: string; code: number; detail: string };
      assert.equal(err.code, 400);
      assert.equal(err.id, "student_service");
      assert.match(err.detail, /^invalid request body for StudentManager\.GetStudent: /);
    });
  }

  test("protobuf over the tcp transport", async () => {
    const transport = new TcpClientTransport();
    try {
      for (const [, bytes] of MALFORMED) {
        const req = { service: "student_service", endpoint: ENDPOINT, contentType: PROTOBUF_TYPE, headers: {}, body: new Uint8Array(bytes) };
        await assert.rejects(transport.request(address, req, 5000), (e: unknown) => e instanceof MicroError && e.code === 400);
      }
    } finally {
      await transport.close();
    }
  });

  test("JSON that does not parse, or does not fit the message", async () => {
    for (const body of ['{"name":', '{"name":5}', "[1,2]"]) {
      const res = await post(JSON_TYPE, body);
      assert.equal(res.status, 400, `${body} → ${res.status}`);
      assert.equal(((await res.json()) as { code: number }).code, 400);
    }
  });

  test("after all of them the same process still answers", async () => {
    assert.equal(server.child.exitCode, null);
    const student = await within(studentsOver("tcp").getStudent({ name: "davie" }), 10_000, "getStudent");
    assert.ok(equals(StudentSchema, student, davie));
  });
});

describe("typed events between processes", () => {
  test("the publisher's generated Student travels as protobuf and the subscriber gets it back", async () => {
    const subscriber = startTs(example("subscriber"), [], { env: quiet });
    try {
      await subscriber.waitForLine(/^message service subscribed to go\.micro\.srv\.message/, 20_000);
      const publisher = startTs(example("publisher"), ["protobuf"], { env: quiet });
      assert.equal(await publisher.exited(20_000), 0, publisher.stderr());
      const size = toBinary(StudentSchema, davie).length;
      assert.match(publisher.stdout(), new RegExp(`^published Student davie to go\\.micro\\.srv\\.message as application/protobuf \\(${size} bytes\\)`));
      const line = await subscriber.waitForLine(/^received .* as application\/protobuf/, 20_000);
      assert.equal(line, `received ${DAVIE_JSON} header name=davie as application/protobuf (${size} bytes)`);
    } finally {
      subscriber.signal("SIGTERM");
      await subscriber.exited(15_000).catch(() => subscriber.signal("SIGKILL"));
    }
  });
});
