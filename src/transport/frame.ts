/**
 * The tcp transport's wire format: length-prefixed frames multiplexed by id over one connection.
 *   u32 length-of-rest | u8 kind | u32 id | u16 header-block-length | headers | body
 * headers: repeated u16 key-length, key, u16 value-length, value (UTF-8).
 * A frame's first byte is the high byte of its length, always < 0x20, which is how the server
 * tells tcp frames from HTTP (whose first byte is a method letter) on one port.
 */
import { canonicalHeaderKey, type Headers } from "./transport.ts";

export const enum FrameKind {
  Request = 1,
  Response = 2,
  Error = 3,
  /** Are you there? The peer answers Pong with the same id; a peer that answers nothing for a while is taken for dead. */
  Ping = 4,
  Pong = 5,
}

export interface Frame {
  kind: FrameKind;
  id: number;
  headers: Headers;
  body: Buffer;
}

const PREFIX = 11; // length(4) + kind(1) + id(4) + header block length(2)

/** Encodes headers as a frame's header block; headers that repeat call after call can be encoded once and the block reused. */
export function encodeHeaderBlock(headers: Headers): Buffer {
  const keys = Object.keys(headers);
  let size = 0;
  for (const k of keys) size += 4 + Buffer.byteLength(k) + Buffer.byteLength(headers[k]!);
  if (size > 0xffff) throw new RangeError("headers exceed 64 KiB");
  const block = Buffer.allocUnsafe(size);
  let off = 0;
  for (const k of keys) {
    const kl = block.write(k, off + 2);
    block.writeUInt16BE(kl, off);
    off += 2 + kl;
    const vl = block.write(headers[k]!, off + 2);
    block.writeUInt16BE(vl, off);
    off += 2 + vl;
  }
  return block;
}

/** headers: the headers, or their block from encodeHeaderBlock(). */
export function encodeFrame(kind: FrameKind, id: number, headers: Headers | Buffer, body: Uint8Array): Buffer {
  const block = Buffer.isBuffer(headers) ? headers : encodeHeaderBlock(headers);
  const frame = Buffer.allocUnsafe(PREFIX + block.length + body.length);
  frame.writeUInt32BE(frame.length - 4, 0);
  frame.writeUInt8(kind, 4);
  frame.writeUInt32BE(id, 5);
  frame.writeUInt16BE(block.length, 9);
  block.copy(frame, PREFIX);
  frame.set(body, PREFIX + block.length);
  return frame;
}

/** Call metadata keys are canonicalised (one case rule with http); a broker message's header keeps its keys as published (canonical = false). */
export function decodeHeaderBlock(block: Buffer, canonical = true): Headers {
  const headers: Headers = {};
  let off = 0;
  while (off < block.length) {
    const kl = block.readUInt16BE(off);
    const key = block.toString("utf8", off + 2, off + 2 + kl);
    off += 2 + kl;
    const vl = block.readUInt16BE(off);
    headers[canonical ? canonicalHeaderKey(key) : key] = block.toString("utf8", off + 2, off + 2 + vl);
    off += 2 + vl;
  }
  if (off !== block.length) throw new RangeError("malformed header block");
  return headers;
}

export interface FrameReaderHandlers {
  onFrame(frame: Frame): void;
  /** A frame longer than the limit: its bytes are skipped, the connection stays usable. */
  onOversize(id: number, length: number): void;
  /** Bytes that cannot be frames: the connection must be dropped. */
  onCorrupt(err: Error): void;
  /** The reader has stopped for this event-loop turn (framesPerTurn): stop reading the socket. */
  onPause?(): void;
  /** The reader goes on: read the socket again. */
  onResume?(): void;
}

export interface FrameReaderOptions {
  /** A header every frame must carry. */
  stamp?: StampedHeader;
  /** Frames of one header block share one headers object (for a reader that only reads them); else each frame gets its own copy. */
  shareHeaders?: boolean;
  /** Frames handed over per event-loop turn; the rest wait for the next turn. Default: all. */
  framesPerTurn?: number;
}

/** A header every frame must carry: frames without it get next() as its value. */
export interface StampedHeader {
  name: string;
  next(): string;
}

/**
 * Reassembles frames from a byte stream. Frames are read in place from each chunk (a frame's
 * body is the only view made of it); only the bytes of a frame split across chunks are copied,
 * once, when the frame is complete.
 */
export class FrameReader {
  /** Bytes of an incomplete frame, in the chunks they came in. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes that must be buffered before the next frame can be read. */
  private needed = 4;
  private skipping = 0;
  /** The last header block and its headers: a connection's frames mostly repeat them, so most frames skip decoding. */
  private lastBlock = Buffer.alloc(0);
  private lastHeaders: Headers = {};
  /** The last block lacks the stamped header, so each of its frames gets one. */
  private lastUnstamped = false;

  private readonly stamp?: StampedHeader;
  private readonly shareHeaders: boolean;
  private readonly framesPerTurn: number;
  /** Frames are waiting for the next turn. */
  private paused = false;

  constructor(
    private readonly maxFrameSize: number,
    private readonly handlers: FrameReaderHandlers,
    opts: FrameReaderOptions = {},
  ) {
    this.stamp = opts.stamp;
    this.shareHeaders = opts.shareHeaders ?? false;
    this.framesPerTurn = opts.framesPerTurn ?? Infinity;
  }

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
    if (this.buffered >= this.needed && !this.paused) this.read();
  }

  private readonly nextTurn = () => {
    this.paused = false;
    if (this.buffered >= this.needed) this.read();
    if (!this.paused) this.handlers.onResume?.();
  };

  private read(): void {
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    let off = 0;
    let frames = 0;
    while (buf.length - off >= 4) {
      if (frames === this.framesPerTurn) {
        this.paused = true;
        this.handlers.onPause?.();
        setImmediate(this.nextTurn);
        break;
      }
      const length = buf.readUInt32BE(off) + 4;
      if (length < PREFIX) return this.corrupt(new RangeError(`frame length ${length - 4} is too short`));
      if (length > this.maxFrameSize + PREFIX) {
        if (buf.length - off < 9) break;
        this.handlers.onOversize(buf.readUInt32BE(off + 5), length - 4);
        const drop = Math.min(length, buf.length - off);
        off += drop;
        this.skipping = length - drop;
        continue;
      }
      if (buf.length - off < length) break;
      let frame: Frame;
      try {
        frame = this.decode(buf, off, off + length);
      } catch (err) {
        return this.corrupt(err as Error);
      }
      off += length;
      frames++;
      this.handlers.onFrame(frame);
    }
    const rest = buf.length - off;
    this.chunks = rest > 0 ? [buf.subarray(off)] : [];
    this.buffered = rest;
    if (rest < 4) this.needed = 4;
    else {
      const length = buf.readUInt32BE(off) + 4;
      this.needed = length > this.maxFrameSize + PREFIX ? 9 : length; // an oversize frame: enough to read its id
    }
  }

  private decode(buf: Buffer, start: number, end: number): Frame {
    const blockStart = start + PREFIX;
    const headerEnd = blockStart + buf.readUInt16BE(start + 9);
    if (headerEnd > end) throw new RangeError("header block overruns frame");
    const last = this.lastBlock;
    if (headerEnd - blockStart !== last.length || buf.compare(last, 0, last.length, blockStart, headerEnd) !== 0) {
      const block = buf.subarray(blockStart, headerEnd);
      this.lastHeaders = decodeHeaderBlock(block);
      this.lastBlock = Buffer.from(block); // a copy: the frame's chunk may be large
      // The stamped header's key goes into the template, so each frame's copy is filled in place:
      // adding a key to a spread copy costs V8 a map transition, microseconds per frame.
      this.lastUnstamped = this.stamp !== undefined && this.lastHeaders[this.stamp.name] === undefined;
      if (this.lastUnstamped) this.lastHeaders[this.stamp!.name] = "";
    }
    let headers = this.lastHeaders;
    if (!this.shareHeaders) {
      headers = { ...headers }; // handlers may change their headers
      if (this.lastUnstamped) headers[this.stamp!.name] = this.stamp!.next();
    }
    return { kind: buf[start + 4] as FrameKind, id: buf.readUInt32BE(start + 5), headers, body: buf.subarray(headerEnd, end) };
  }

  private corrupt(err: Error): void {
    this.chunks = [];
    this.buffered = 0;
    this.needed = 4;
    this.handlers.onCorrupt(err);
  }
}
