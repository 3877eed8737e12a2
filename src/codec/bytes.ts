/** Raw bytes, for handlers that want the body as it came. */
export const bytesCodec = {
  contentType: "application/octet-stream",
  encode(value: unknown): Uint8Array {
    if (value instanceof Uint8Array) return value;
    throw new TypeError("bytes codec encodes only Uint8Array values");
  },
  decode(body: Uint8Array): Uint8Array {
    return body;
  },
};
