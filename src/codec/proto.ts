import { fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";

function requireSchema(schema: DescMessage | undefined): DescMessage {
  if (!schema) throw new TypeError("protobuf codec needs a message schema (no generated type is known for this body)");
  return schema;
}

export const protoCodec = {
  contentType: "application/protobuf",
  encode(value: unknown, schema?: DescMessage): Uint8Array {
    return toBinary(requireSchema(schema), value as never);
  },
  decode(body: Uint8Array, schema?: DescMessage): unknown {
    return fromBinary(requireSchema(schema), body);
  },
};
