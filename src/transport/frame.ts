/**
 * The tcp transport's wire format: length-prefixed frames multiplexed by id over one connection.
 *   u32 length-of-rest | u8 kind | u32 id | u16 header-block-length | headers | body
 * headers: repeated u16 key-length, key, u16 value-length, value (UTF-8).
 * A frame's first byte is the high byte of its length, always < 0x20, which is how the server
 * tells tcp frames from HTTP (whose first byte is a method letter) on one port.
 */
import type { Headers } from "./transport.ts";

export const enum FrameKind {
  Request = 1,
  Response = 2,
  Error = 3,
}

export interface Frame {
  kind: FrameKind;
  id: number;
  headers: Headers;
  body: Buffer;
}

const PREFIX = 11; // length(4) + kind(1) + id(4) + header block length(2)

export function encodeFrame(kind: FrameKind, id: number, headers: Headers, body: Uint8Array): Buffer {
  const keys = Object.keys(headers);
  let headerBytes = 0;
  for (const k of keys) headerBytes += 4 + Buffer.byteLength(k) + Buffer.byteLength(headers[k]!);
  if (headerBytes > 0xffff) throw new RangeError("headers exceed 64 KiB");
  const frame = Buffer.allocUnsafe(PREFIX + headerBytes + body.length);
  frame.writeUInt32BE(frame.length - 4, 0);
  frame.writeUInt8(kind, 4);
  frame.writeUInt32BE(id, 5);
  frame.writeUInt16BE(headerBytes, 9);
  let off = PREFIX;
  for (const k of keys) {
    const v = headers[k]!;
    const kl = frame.write(k, off + 2);
    frame.writeUInt16BE(kl, off);
    off += 2 + kl;
    const vl = frame.write(v, off + 2);
    frame.writeUInt16BE(vl, off);
    off += 2 + vl;
  }
  frame.set(body, off);
  return frame;
}

function decodeFrame(frame: Buffer): Frame {
  const kind = frame.readUInt8(4) as FrameKind;
  const id = frame.readUInt32BE(5);
  const headerEnd = PREFIX + frame.readUInt16BE(9);
  if (headerEnd > frame.length) throw new RangeError("header block overruns frame");
  const headers: Headers = {};
  let off = PREFIX;
  while (off < headerEnd) {
    const kl = frame.readUInt16BE(off);
    const key = frame.toString("utf8", off + 2, off + 2 + kl);
    off += 2 + kl;
    const vl = frame.readUInt16BE(off);
    headers[key] = frame.toString("utf8", off + 2, off + 2 + vl);
    off += 2 + vl;
  }
  if (off !== headerEnd) throw new RangeError("malformed header block");
  return { kind, id, headers, body: frame.subarray(headerEnd) };
}

export interface FrameReaderHandlers {
  onFrame(frame: Frame): void;
  /** A frame longer than the limit: its bytes are skipped, the connection stays usable. */
  onOversize(id: number, length: number): void;
  /** Bytes that cannot be frames: the connection must be dropped. */
  onCorrupt(err: Error): void;
}

/** Reassembles frames from a byte stream without copying more than once per frame. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private skipping = 0;

  constructor(
    private readonly maxFrameSize: number,
    private readonly handlers: FrameReaderHandlers,
  ) {}

  /** Bytes of an incomplete frame are waiting (a stalled peer leaves this true). */
  get pending(): boolean {
    return this.buffered > 0 || this.skipping > 0;
  }

  push(chunk: Buffer): void {
    if (this.skipping > 0) {
      const skip = Math.min(this.skipping, chunk.length);
      this.skipping -= skip;
      chunk = chunk.subarray(skip);
      if (chunk.length === 0) return;
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      const head = this.peek(PREFIX);
      const length = head.readUInt32BE(0) + 4;
      if (length < PREFIX) return this.corrupt(new RangeError(`frame length ${length - 4} is too short`));
      if (length > this.maxFrameSize + PREFIX) {
        if (this.buffered < 9) return;
        this.handlers.onOversize(head.readUInt32BE(5), length - 4);
        const drop = Math.min(length, this.buffered);
        this.take(drop);
        this.skipping = length - drop;
        continue;
      }
      if (this.buffered < length) return;
      const frame = this.take(length);
      let decoded: Frame;
      try {
        decoded = decodeFrame(frame);
      } catch (err) {
        return this.corrupt(err as Error);
      }
      this.handlers.onFrame(decoded);
    }
  }

  private corrupt(err: Error): void {
    this.chunks = [];
    this.buffered = 0;
    this.handlers.onCorrupt(err);
  }

  /** The first n buffered bytes (fewer if not there), without consuming them. */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n || this.chunks.length === 1) return first;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  private take(n: number): Buffer {
    let first = this.chunks[0]!;
    if (first.length < n) {
      first = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [first];
    }
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return out;
  }
}
