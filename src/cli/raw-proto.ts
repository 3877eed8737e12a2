/**
 * Schema-less protobuf decoding, like `protoc --decode_raw`: the command and the dashboard tail
 * topics whose protobuf types they do not know, and field numbers with values beat a byte dump.
 */
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

export type RawValue = number | string | RawMessage | RawValue[];
export interface RawMessage {
  [fieldNumber: string]: RawValue;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** 64-bit values as numbers while exact, as decimal strings beyond. */
export const int64 = (v: bigint | string): number | string => {
  const n = BigInt(v);
  return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(n) : n.toString();
};

/** Text without control characters other than tab and line breaks (message bytes rarely are). */
function asText(bytes: Uint8Array): string | undefined {
  try {
    const s = strictUtf8.decode(bytes);
    return /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(s) ? undefined : s;
  } catch {
    return undefined;
  }
}

/** Length-delimited: text, else a nested message, else base64 bytes. */
function lengthDelimited(bytes: Uint8Array): RawValue {
  const text = asText(bytes);
  if (text !== undefined) return text;
  try {
    return decodeRawProto(bytes);
  } catch {
    return Buffer.from(bytes).toString("base64");
  }
}

/** Decodes protobuf wire format into {fieldNumber: value}; repeated fields become arrays. Throws on malformed input. */
export function decodeRawProto(bytes: Uint8Array): RawMessage {
  const reader = new BinaryReader(bytes);
  const out: RawMessage = {};
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    let value: RawValue;
    switch (wireType) {
      case WireType.Varint:
        value = int64(reader.uint64());
        break;
      case WireType.Bit64:
        value = int64(reader.fixed64());
        break;
      case WireType.Bit32:
        value = reader.fixed32();
        break;
      case WireType.LengthDelimited:
        value = lengthDelimited(reader.bytes());
        break;
      default:
        throw new Error(`unsupported wire type ${wireType} at field ${field}`);
    }
    const previous = out[field];
    out[field] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
  }
  return out;
}
