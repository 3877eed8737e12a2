import type { Codec } from "./codec.ts";

/** Raw bytes, for handlers that want the body as it came. */
export const bytesCodec: Codec = {
  contentType: "application/octet-stream",
  encode(value) {
    if (value instanceof Uint8Array) return value;
    throw new TypeError("bytes codec encodes only Uint8Array values");
  },
  decode(body) {
    return body;
  },
};
