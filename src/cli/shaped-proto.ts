/**
 * Protobuf decoding with a registry shape (go-micro's Value, whose protobuf-derived fields carry
 * their numbers): the dashboard shows a protobuf event with field names although it holds no
 * generated code, only what the services advertised. Fields the shape does not know are kept under
 * their numbers, as `protoc --decode_raw` would show them.
 */
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import type { Value } from "../registry/registry.ts";
import { decodeRawProto, int64 } from "./raw-proto.ts";

const SCALARS: Record<string, (r: BinaryReader) => unknown> = {
  double: (r) => r.double(),
  float: (r) => r.float(),
  int64: (r) => int64(r.int64()),
  uint64: (r) => int64(r.uint64()),
  sint64: (r) => int64(r.sint64()),
  fixed64: (r) => int64(r.fixed64()),
  sfixed64: (r) => int64(r.sfixed64()),
  int32: (r) => r.int32(),
  uint32: (r) => r.uint32(),
  sint32: (r) => r.sint32(),
  fixed32: (r) => r.fixed32(),
  sfixed32: (r) => r.sfixed32(),
  bool: (r) => r.bool(),
  string: (r) => r.string(),
  bytes: (r) => Buffer.from(r.bytes()).toString("base64"),
};

/** "[]T" → list of T; "map<K,V>" → map; otherwise one T. */
function typeOf(type: string): { kind: "single" | "list" | "map"; element: string; key?: string } {
  if (type.startsWith("[]")) return { kind: "list", element: type.slice(2) };
  const map = /^map<([^,]+),(.+)>$/.exec(type);
  if (map) return { kind: "map", key: map[1]!, element: map[2]! };
  return { kind: "single", element: type };
}

/** Finds the fields of a message type by name (shapes stop listing fields where a type recurses). */
export type ShapeResolver = (typeName: string) => Value[] | undefined;

/** Decodes bytes as the message `fields` describe; throws on malformed input. */
export function decodeShapedProto(bytes: Uint8Array, fields: Value[], resolve: ShapeResolver = () => undefined): Record<string, unknown> {
  const reader = new BinaryReader(bytes);
  const out: Record<string, unknown> = {};
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [number, wireType] = reader.tag();
    const field = fields.find((f) => f.number === number);
    if (!field) {
      reader.skip(wireType, number);
      Object.assign(out, decodeRawProto(bytes.subarray(start, reader.pos)));
      continue;
    }
    const { kind, element, key } = typeOf(field.type);
    if (kind === "map") {
      const entry = decodeShapedProto(reader.bytes(), [
        { name: "key", type: key!, number: 1 },
        { name: "value", type: element, number: 2, values: field.values },
      ], resolve);
      const map = (out[field.name] ??= {}) as Record<string, unknown>;
      map[String(entry.key ?? "")] = entry.value;
      continue;
    }
    const values = readValues(reader, wireType, kind, element, field.values ?? resolve(element), resolve);
    if (kind === "list") out[field.name] = [...((out[field.name] as unknown[] | undefined) ?? []), ...values];
    else out[field.name] = values.at(-1); // the last one wins, as protobuf merges
  }
  return out;
}

/** One value, or a packed run of scalars. */
function readValues(
  reader: BinaryReader,
  wireType: WireType,
  kind: "single" | "list",
  type: string,
  fields: Value[] | null | undefined,
  resolve: ShapeResolver,
): unknown[] {
  if (fields?.length) return [decodeShapedProto(reader.bytes(), fields, resolve)];
  // Not a message the registry describes: a scalar, or else an enum (its numbers), packed in a list.
  const scalar = SCALARS[type] ?? (kind === "list" && !type.startsWith("google.protobuf.") ? SCALARS.int32 : undefined);
  const packable = wireType === WireType.LengthDelimited && type !== "string" && type !== "bytes";
  if (scalar && !packable) return [scalar(reader)];
  if (!scalar && wireType === WireType.Varint) return [reader.int32()]; // an enum: its number
  if (scalar) {
    const packed = new BinaryReader(reader.bytes());
    const out: unknown[] = [];
    while (packed.pos < packed.len) out.push(scalar(packed));
    return out;
  }
  // A message without a shape (a well-known type): schema-less.
  if (wireType === WireType.LengthDelimited) return [decodeRawProto(reader.bytes())];
  return [Buffer.from(reader.skip(wireType)).toString("base64")];
}
