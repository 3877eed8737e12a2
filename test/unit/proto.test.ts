/** The proto layer in one process: codecs, typed clients and handlers, describeMessage, typed events. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create, equals, toBinary, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  JSON_TYPE,
  MicroError,
  PROTOBUF_TYPE,
  Server,
  Service,
  codecFor,
  createClient,
  describeMessage,
  encodeEvent,
  notFound,
  type ServiceImpl,
} from "../../src/index.ts";
import { StudentRequestSchema, StudentSchema, type Student, type StudentRequest } from "../../examples/student/gen/student_pb.ts";
import { Color, EverythingSchema, Kitchen, TreeSchema, type Everything } from "../proto/gen/kitchen_pb.ts";
import { within } from "../helpers/net.ts";
import { decodeShapedProto } from "../../src/cli/shaped-proto.ts";

const CODECS = [PROTOBUF_TYPE, JSON_TYPE] as const;

/** Every field set, most at values that break naive encoders (64-bit extremes, NaN-free floats, raw bytes). */
const everything: MessageInitShape<typeof EverythingSchema> = {
  fDouble: -1.25e300,
  fFloat: 1.5,
  fInt64: -9223372036854775808n,
  fUint64: 18446744073709551615n,
  fInt32: -2147483648,
  fFixed64: 12345678901234567890n,
  fFixed32: 4294967295,
  fBool: true,
  fString: "软件工程专业 ✓",
  fBytes: new Uint8Array([0, 1, 127, 128, 255]),
  fUint32: 4294967295,
  fSfixed32: -7,
  fSfixed64: -9007199254740993n,
  fSint32: -1,
  fSint64: -9223372036854775807n,
  color: Color.GREEN,
  address: { street: "Main St", zip: 10001 },
  numbers: [0, -1, 2147483647],
  words: ["", "a", "β"],
  addresses: [{ street: "A" }, { zip: 2 }],
  colors: [Color.RED, Color.UNSPECIFIED, Color.GREEN],
  counts: { a: 1, "": -3 },
  addressById: { "-5": { street: "neg" }, "9007199254740993": { zip: 1 } },
  contact: { case: "postal", value: { street: "PO Box 1" } },
  nickname: "", // set but empty: presence must survive
  created: timestampFromDate(new Date("2024-02-29T12:34:56.789Z")),
  note: { text: "nested type" },
};

describe("codecs carry every field type", () => {
  const variants: Array<[string, Everything]> = [
    ["all fields set", create(EverythingSchema, everything)],
    ["oneof on its scalar member", create(EverythingSchema, { contact: { case: "email", value: "d@example.com" } })],
    ["all defaults", create(EverythingSchema)],
  ];
  for (const contentType of CODECS) {
    for (const [what, message] of variants) {
      test(`${contentType}: ${what}`, () => {
        const codec = codecFor(contentType)!;
        const decoded = codec.decode(codec.encode(message, EverythingSchema), EverythingSchema) as Everything;
        assert.equal(decoded.$typeName, "tsmicro.test.Everything");
        assert.deepEqual(toJson(EverythingSchema, decoded), toJson(EverythingSchema, message)); // a readable diff
        assert.ok(equals(EverythingSchema, decoded, message), "round trip changed the message");
      });
    }
  }

  test("an optional field set to its default keeps its presence; unset stays unset", () => {
    const codec = codecFor(PROTOBUF_TYPE)!;
    const withEmpty = codec.decode(codec.encode(create(EverythingSchema, { nickname: "" }), EverythingSchema), EverythingSchema) as Everything;
    const without = codec.decode(codec.encode(create(EverythingSchema), EverythingSchema), EverythingSchema) as Everything;
    assert.equal(withEmpty.nickname, "");
    assert.equal(without.nickname, undefined);
  });
});

describe("unknown fields are tolerated", () => {
  const student = create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" });

  test("protobuf: an older schema reads what it knows and passes the rest through", () => {
    // StudentRequest {name = 1} is an "older" Student: fields 2–4 are unknown to it.
    const codec = codecFor(PROTOBUF_TYPE)!;
    const older = codec.decode(codec.encode(student, StudentSchema), StudentRequestSchema) as StudentRequest;
    assert.equal(older.name, "davie");
    const forwarded = codec.decode(codec.encode(older, StudentRequestSchema), StudentSchema) as Student;
    assert.ok(equals(StudentSchema, forwarded, student), "unknown fields were lost on re-encoding");
  });

  test("JSON: unknown keys are ignored, known ones decoded", () => {
    const body = new TextEncoder().encode('{"name":"davie","grade":80,"addedLater":{"x":[1,2]}}');
    const decoded = codecFor(JSON_TYPE)!.decode(body, StudentSchema) as Student;
    assert.ok(equals(StudentSchema, decoded, create(StudentSchema, { name: "davie", grade: 80 })));
  });
});

describe("describeMessage: registry shapes", () => {
  test("the walkthrough's Student", () => {
    assert.deepEqual(describeMessage(StudentSchema), {
      name: "Student",
      type: "student.Student",
      values: [
        { name: "name", type: "string", number: 1 },
        { name: "classes", type: "string", number: 2 },
        { name: "grade", type: "int32", number: 3 },
        { name: "phone", type: "string", number: 4 },
      ],
    });
  });

  test("every kind of field, by its JSON name, proto type and field number", () => {
    const shape = describeMessage(EverythingSchema);
    const field = (name: string) => shape.values!.find((v) => v.name === name);
    const address = { type: "tsmicro.test.Address", values: [{ name: "street", type: "string", number: 1 }, { name: "zip", type: "uint32", number: 2 }] };
    assert.deepEqual(
      shape.values!.slice(0, 15).map((v) => v.type),
      ["double", "float", "int64", "uint64", "int32", "fixed64", "fixed32", "bool", "string", "bytes", "uint32", "sfixed32", "sfixed64", "sint32", "sint64"],
    );
    assert.deepEqual(field("fInt64"), { name: "fInt64", type: "int64", number: 3 });
    assert.deepEqual(field("color"), { name: "color", type: "tsmicro.test.Color", number: 16 });
    assert.deepEqual(field("address"), { name: "address", number: 17, ...address });
    assert.deepEqual(field("numbers"), { name: "numbers", type: "[]int32", number: 18 });
    assert.deepEqual(field("addresses"), { name: "addresses", number: 20, ...address, type: "[]tsmicro.test.Address" });
    assert.deepEqual(field("colors"), { name: "colors", type: "[]tsmicro.test.Color", number: 21 });
    assert.deepEqual(field("counts"), { name: "counts", type: "map<string,int32>", number: 22 });
    assert.deepEqual(field("addressById"), { name: "addressById", number: 23, ...address, type: "map<int64,tsmicro.test.Address>" });
    // oneof members are flat, as in the JSON form.
    assert.deepEqual(field("email"), { name: "email", type: "string", number: 24 });
    assert.deepEqual(field("postal"), { name: "postal", number: 25, ...address });
    assert.deepEqual(field("nickname"), { name: "nickname", type: "string", number: 26 });
    // Well-known types have their own JSON (a Timestamp is a string): no fields listed.
    assert.deepEqual(field("created"), { name: "created", type: "google.protobuf.Timestamp", number: 27 });
    assert.deepEqual(field("note"), { name: "note", type: "tsmicro.test.Everything.Note", number: 28, values: [{ name: "text", type: "string", number: 1 }] });
    assert.equal(shape.values!.length, 28);
  });

  test("a recursive type stops where it would repeat", () => {
    assert.deepEqual(describeMessage(TreeSchema), {
      name: "Tree",
      type: "tsmicro.test.Tree",
      values: [
        { name: "label", type: "string", number: 1 },
        { name: "children", type: "[]tsmicro.test.Tree", number: 2 },
      ],
    });
  });
});

describe("protobuf bodies named by their registry shape (what the dashboard holds)", () => {
  test("the walkthrough's Student", () => {
    const body = toBinary(StudentSchema, create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" }));
    assert.deepEqual(decodeShapedProto(body, describeMessage(StudentSchema).values!), { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" });
  });

  test("a recursive type: the shape's own fields, found by type name where the shape stops", () => {
    const tree = describeMessage(TreeSchema);
    const body = toBinary(TreeSchema, create(TreeSchema, { label: "root", children: [{ label: "a", children: [{ label: "a1" }] }, { label: "b" }] }));
    const decoded = decodeShapedProto(body, tree.values!, (type) => (type === tree.type ? tree.values! : undefined));
    assert.deepEqual(decoded, { label: "root", children: [{ label: "a", children: [{ label: "a1" }] }, { label: "b" }] });
  });

  test("every kind of field: scalars, 64-bit, nested, packed, repeated messages, maps, enums; unknown fields by number", () => {
    const body = toBinary(EverythingSchema, create(EverythingSchema, everything));
    const shape = describeMessage(EverythingSchema).values!;
    const decoded = decodeShapedProto(body, shape);
    assert.equal(decoded.fString, everything.fString);
    assert.equal(decoded.fInt32, -2147483648);
    assert.equal(decoded.fUint64, "18446744073709551615");
    assert.equal(decoded.fSint32, -1);
    assert.equal(decoded.fBool, true);
    assert.equal(decoded.fBytes, "AAF/gP8=");
    assert.equal(decoded.color, Color.GREEN);
    assert.deepEqual(decoded.address, { street: "Main St", zip: 10001 });
    assert.deepEqual(decoded.numbers, [0, -1, 2147483647]);
    assert.deepEqual(decoded.words, ["", "a", "β"]);
    assert.deepEqual(decoded.addresses, [{ street: "A" }, { zip: 2 }]);
    assert.deepEqual(decoded.counts, { a: 1, "": -3 });
    assert.deepEqual(decoded.addressById, { "-5": { street: "neg" }, "9007199254740993": { zip: 1 } });
    assert.deepEqual(decoded.postal, { street: "PO Box 1" });
    assert.deepEqual(decoded.note, { text: "nested type" });
    assert.deepEqual(decoded.colors, [Color.RED, Color.UNSPECIFIED, Color.GREEN]);
    // A shape that lacks a field (an older schema) keeps it under its number.
    const older = decodeShapedProto(body, shape.filter((f) => f.name !== "fString"));
    assert.equal(older["9"], everything.fString);
    assert.equal(older.fString, undefined);
  });
});

describe("typed clients and handlers", () => {
  const name = `kitchen_${randomUUID().slice(0, 8)}`;
  const server = new Service({ name, registry: "memory", broker: "memory", handleSignals: false }).init([]);
  const caller = new Service({ name: `${name}_client`, registry: "memory", broker: "memory", handleSignals: false }).init([]);
  const kitchen = createClient(Kitchen, name, caller);
  const seen: string[] = [];
  const impl: ServiceImpl<typeof Kitchen> = {
    echo(req, ctx) {
      seen.push(ctx.headers["Content-Type"] ?? "");
      return req;
    },
    // A plain object of the response's fields is enough.
    grow(tree) {
      if (tree.label === "missing") throw notFound(name, "no such tree");
      if (tree.label === "boom") throw new Error("kaboom");
      return { label: `${tree.label}+`, children: [tree] };
    },
  };

  before(async () => {
    server.handle(Kitchen, impl);
    await server.start();
  });
  after(async () => {
    await caller.stop();
    await server.stop();
  });

  for (const contentType of CODECS) {
    test(`every field type through a call as ${contentType}`, async () => {
      const sent = create(EverythingSchema, everything);
      const got = await within(kitchen.echo(everything, { contentType }), 5000, "echo");
      assert.equal(got.$typeName, "tsmicro.test.Everything");
      assert.ok(equals(EverythingSchema, got, sent));
      assert.equal(seen.at(-1), contentType);
    });
  }

  test("protobuf is the default body", async () => {
    await kitchen.echo({ fString: "x" });
    assert.equal(seen.at(-1), PROTOBUF_TYPE);
    const json = createClient(Kitchen, name, caller, { contentType: JSON_TYPE });
    await json.echo({ fString: "x" });
    assert.equal(seen.at(-1), JSON_TYPE);
  });

  test("a handler's plain object comes back as the typed response", async () => {
    const tree = await kitchen.grow({ label: "oak" });
    assert.equal(tree.$typeName, "tsmicro.test.Tree");
    assert.equal(tree.label, "oak+");
    assert.equal(tree.children[0]!.label, "oak");
  });

  test("errors arrive as MicroError: the handler's own, and 500 for an exception", async () => {
    await assert.rejects(kitchen.grow({ label: "missing" }), (e: unknown) => e instanceof MicroError && e.code === 404 && e.detail === "no such tree" && e.id === name);
    await assert.rejects(kitchen.grow({ label: "boom" }), (e: unknown) => e instanceof MicroError && e.code === 500 && e.detail === "kaboom");
  });

  test("unary rpcs are endpoints with their shapes; streaming rpcs are left out", async () => {
    const endpoints = (await server.describe()).endpoints!.filter((e) => e.name.startsWith("Kitchen."));
    assert.deepEqual(
      endpoints.map((e) => e.name),
      ["Kitchen.Echo", "Kitchen.Grow"],
    );
    assert.deepEqual(endpoints[0]!.request, describeMessage(EverythingSchema));
    assert.deepEqual(endpoints[1]!.response, describeMessage(TreeSchema));
    assert.equal("watch" in kitchen, false);
    // @ts-expect-error the typed client has no method for a streaming rpc
    assert.equal(kitchen.watch, undefined);
  });

  test("an implementation missing an rpc is refused", () => {
    // @ts-expect-error grow() is missing
    assert.throws(() => new Server({ name: "incomplete" }).handle(Kitchen, { echo: (r) => r }), /no grow\(\) for rpc Grow/);
  });
});

describe("typed events", () => {
  const service = new Service({ name: `events_${randomUUID().slice(0, 8)}`, registry: "memory", broker: "memory", handleSignals: false }).init([]);
  after(() => service.stop());

  test("a generated message is published as protobuf and received as the typed message", async () => {
    const topic = `go.micro.srv.message.${randomUUID()}`;
    const student = create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" });
    let resolve!: (got: { message: Student; header: Record<string, string>; body: Uint8Array }) => void;
    const received = new Promise<{ message: Student; header: Record<string, string>; body: Uint8Array }>((r) => (resolve = r));
    await service.subscribe<Student>(topic, (message, event) => resolve({ message, header: event.message.header, body: event.message.body }), {
      schema: StudentSchema,
    });
    await service.start();
    await service.publish(topic, student, { header: { name: student.name } });
    const got = await within(received, 5000, "the event");
    assert.equal(got.header["Content-Type"], PROTOBUF_TYPE);
    assert.equal(got.header.name, "davie");
    assert.deepEqual(got.body, toBinary(StudentSchema, student));
    assert.equal(got.message.$typeName, "student.Student");
    assert.ok(equals(StudentSchema, got.message, student));
    // The point of protobuf here: the same event is smaller than its JSON.
    assert.ok(got.body.length < encodeEvent(topic, student, { contentType: JSON_TYPE }).body.length);
  });
});
