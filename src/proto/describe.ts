/**
 * Registry shapes from protobuf schemas: go-micro's Value {name, type, values}, so a CLI or
 * dashboard can show an endpoint's request and response and build one.
 *
 * Names are the fields' proto3 JSON names (what the JSON codec writes and curl users see); types
 * are proto type names: scalars as in .proto ("int32", "bytes"), messages and enums fully
 * qualified ("student.Student"), "[]T" for repeated and "map<K,V>" for maps. A message field lists
 * its own fields in values, except where that would recurse. Fields carry their field numbers, so
 * a protobuf body can be shown with field names by whoever reads the registry.
 */
import type { DescField, DescMessage, ScalarType } from "@bufbuild/protobuf";
import { protobuf } from "../codec/protobuf.ts";
import type { Value } from "../registry/registry.ts";

/** The Value of a message type: {name: "Student", type: "student.Student", values: [fields]}. */
export function describeMessage(schema: DescMessage): Value {
  return { name: schema.name, type: schema.typeName, values: fieldsOf(schema, new Set()) };
}

/** `enclosing` holds the message types on the path from the root, so recursive types stop. */
function fieldsOf(schema: DescMessage, enclosing: ReadonlySet<string>): Value[] | undefined {
  // Well-known types have their own JSON forms (a Timestamp is a string): their fields would mislead.
  if (enclosing.has(schema.typeName) || schema.typeName.startsWith("google.protobuf.")) return undefined;
  const inside = new Set(enclosing).add(schema.typeName);
  return schema.fields.map((field) => describeField(field, inside));
}

function describeField(field: DescField, enclosing: ReadonlySet<string>): Value {
  const element = elementOf(field);
  const type =
    field.fieldKind === "list" ? `[]${element.type}` : field.fieldKind === "map" ? `map<${scalarName(field.mapKey)},${element.type}>` : element.type;
  const values = element.message ? fieldsOf(element.message, enclosing) : undefined;
  return values ? { name: field.jsonName, type, number: field.number, values } : { name: field.jsonName, type, number: field.number };
}

/** The type of a single field value, or of one element of a list or map. */
function elementOf(field: DescField): { type: string; message?: DescMessage } {
  if (field.message) return { type: field.message.typeName, message: field.message };
  if (field.enum) return { type: field.enum.typeName };
  return { type: scalarName(field.scalar) };
}

const scalarName = (scalar: ScalarType) => protobuf().ScalarType[scalar].toLowerCase();
