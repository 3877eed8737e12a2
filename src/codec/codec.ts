/**
 * Codecs, chosen by Content-Type. A protobuf schema (a @bufbuild/protobuf DescMessage) makes a
 * body typed: binary for application/protobuf, proto3 canonical JSON for application/json.
 * Without a schema JSON bodies are plain objects and protobuf bodies cannot be decoded.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import { jsonCodec } from "./json.ts";
import { protoCodec } from "./proto.ts";
import { bytesCodec } from "./bytes.ts";
import { PluginKind } from "../cmd/plugins.ts";

export interface Codec {
  readonly contentType: string;
  encode(value: unknown, schema?: DescMessage): Uint8Array;
  decode(body: Uint8Array, schema?: DescMessage): unknown;
}

export const JSON_TYPE = "application/json";
export const PROTOBUF_TYPE = "application/protobuf";
export const BYTES_TYPE = "application/octet-stream";

/**
 * Codecs by Content-Type (lower case), for request, response and event bodies:
 * `codecs.register("application/msgpack", msgpackCodec)`. Registered eagerly, unlike other plugin
 * kinds: every call looks its codec up, so the lookup must be synchronous.
 */
export const codecs = new PluginKind<Codec>("codec");
// The codec files do not import Codec (that would be an import cycle): registering them checks them.
for (const [type, codec] of [
  [JSON_TYPE, jsonCodec],
  ["text/json", jsonCodec],
  ["application/json-rpc", jsonCodec],
  [PROTOBUF_TYPE, protoCodec],
  ["application/x-protobuf", protoCodec],
  ["application/proto", protoCodec],
  ["application/grpc+proto", protoCodec],
  [BYTES_TYPE, bytesCodec],
] as const satisfies ReadonlyArray<readonly [string, Codec]>) {
  codecs.register(type, codec);
}

/** The codec for a Content-Type (parameters such as "; charset=utf-8" ignored); JSON when absent. */
export function codecFor(contentType: string | undefined): Codec | undefined {
  if (!contentType) return jsonCodec;
  // Almost every call names a type exactly as registered: skip the normalising on the hot path.
  return codecs.get(contentType) ?? codecs.get(contentType.split(";", 1)[0]!.trim().toLowerCase());
}

/** True for values created by @bufbuild/protobuf (they carry their type name). */
export function isProtoMessage(value: unknown): value is { $typeName: string } {
  return typeof value === "object" && value !== null && typeof (value as { $typeName?: unknown }).$typeName === "string";
}
