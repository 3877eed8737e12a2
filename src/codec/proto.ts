import { fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import type { Codec } from "./codec.ts";

function requireSchema(schema: DescMessage | undefined): DescMessage {
  if (!schema) throw new TypeError("protobuf codec needs a message schema (no generated type is known for this body)");
  return schema;
}

export const protoCodec: Codec = {
  contentType: "application/protobuf",
  encode(value, schema?: DescMessage) {
    return toBinary(requireSchema(schema), value as never);
  },
  decode(body, schema?: DescMessage) {
    return fromBinary(requireSchema(schema), body);
  },
};
