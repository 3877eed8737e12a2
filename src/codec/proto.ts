import type { DescMessage } from "@bufbuild/protobuf";
import { protobuf } from "./protobuf.ts";

function requireSchema(schema: DescMessage | undefined): DescMessage {
  if (!schema) throw new TypeError("protobuf codec needs a message schema (no generated type is known for this body)");
  return schema;
}

export const protoCodec = {
  contentType: "application/protobuf",
  encode(value: unknown, schema?: DescMessage): Uint8Array {
    return protobuf().toBinary(requireSchema(schema), value as never);
  },
  decode(body: Uint8Array, schema?: DescMessage): unknown {
    return protobuf().fromBinary(requireSchema(schema), body);
  },
};
