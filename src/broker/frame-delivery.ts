/**
 * The http broker's fast path between tsmicro nodes: instead of one HTTP POST per event, a
 * publisher sends a subscriber broker's deliveries over one multiplexed tcp frame connection
 * (transport/tcp.ts), the deliveries of one event-loop turn to one broker address batched into a
 * single frame. The subscriber answers the frame with one status per delivery, so every publish
 * still learns whether its handler ran. Only subscriber nodes whose registry metadata advertise
 * it (FRAME_CAPABILITY) are reached this way; go-micro's nodes get its HTTP delivery.
 *
 * Batch frame body, repeated per delivery: u16 id length | subscription id | u16 header block
 * length | header block (frame.ts encoding) | u32 body length | body.
 * Answer body: one status byte per delivery, then, if any failed, their errors' JSON, one a line.
 */
import { MicroError, badRequest, internalServerError, requestEntityTooLarge } from "../errors.ts";
import { decodeHeaderBlock, encodeHeaderBlock } from "../transport/frame.ts";
import { TcpClientTransport } from "../transport/tcp.ts";
import type { ClientTransportOptions, Headers, TransportRequest, TransportResponse } from "../transport/transport.ts";
import type { Message } from "./broker.ts";

/** Registry metadata of a subscriber node that takes batched frame deliveries. */
export const FRAME_CAPABILITY = { key: "delivery", value: "tsmicro-frames" } as const;
const BATCH_CONTENT_TYPE = "application/x-tsmicro-broker-batch";
const BATCH_ENDPOINT = "Broker.Deliver";

export const enum Status {
  Delivered = 0,
  /** The subscription is gone (unsubscribed since the publisher's registry view): not delivered, not a failure. */
  Gone = 1,
  Failed = 2,
}

/** What became of one delivery: a status, or the error the handler (or the connection) gave. */
export type Outcome = Status.Delivered | Status.Gone | MicroError;

/** A batch is sent once it holds this many bytes, without waiting for the end of the turn. */
const BATCH_BYTES = 512 * 1024;
const DELIVERY_TIMEOUT_MS = 10_000;
const NO_HEADERS = Buffer.alloc(0);

interface Batch {
  ids: string[];
  blocks: Buffer[];
  bodies: Uint8Array[];
  settle: Array<(outcome: Outcome) => void>;
  bytes: number;
}

/** The publisher's side: deliveries queued per broker address and sent once per event-loop turn. */
export class FrameDeliveries {
  private readonly transport: TcpClientTransport;
  private readonly batches = new Map<string, Batch>();
  private flushScheduled = false;

  constructor(
    private readonly service: string,
    private readonly credentials: () => Headers,
    /** E.g. tls, for subscribers that serve only TLS. */
    transportOpts: ClientTransportOptions = {},
  ) {
    this.transport = new TcpClientTransport({ maxInFlight: 100_000, ...transportOpts });
  }

  send(address: string, subscriptionId: string, message: Message): Promise<Outcome> {
    const block = isEmpty(message.header) ? NO_HEADERS : encodeHeaderBlock(message.header);
    const size = 8 + Buffer.byteLength(subscriptionId) + block.length + message.body.length;
    let batch = this.batches.get(address);
    if (batch && batch.bytes + size > BATCH_BYTES) {
      this.batches.delete(address);
      this.sendBatch(address, batch);
      batch = undefined;
    }
    if (!batch) this.batches.set(address, (batch = { ids: [], blocks: [], bodies: [], settle: [], bytes: 0 }));
    batch.ids.push(subscriptionId);
    batch.blocks.push(block);
    batch.bodies.push(message.body);
    batch.bytes += size;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
    return new Promise((resolve) => batch.settle.push(resolve));
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const [address, batch] of this.batches) this.sendBatch(address, batch);
    this.batches.clear();
  }

  private sendBatch(address: string, batch: Batch): void {
    const req: TransportRequest = {
      service: this.service,
      endpoint: BATCH_ENDPOINT,
      contentType: BATCH_CONTENT_TYPE,
      headers: this.credentials(),
      body: encodeBatch(batch),
    };
    this.transport.request(address, req, DELIVERY_TIMEOUT_MS).then(
      (res) => settleAll(batch.settle, res),
      (err: MicroError) => {
        for (const settle of batch.settle) settle(err);
      },
    );
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}

function encodeBatch({ ids, blocks, bodies, bytes }: Batch): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  let off = 0;
  for (let i = 0; i < ids.length; i++) {
    const idLength = out.write(ids[i]!, off + 2);
    off = out.writeUInt16BE(idLength, off) + idLength;
    const block = blocks[i]!;
    off = out.writeUInt16BE(block.length, off);
    off += block.copy(out, off);
    const body = bodies[i]!;
    off = out.writeUInt32BE(body.length, off);
    out.set(body, off);
    off += body.length;
  }
  return out;
}

function settleAll(settle: Array<(outcome: Outcome) => void>, res: TransportResponse): void {
  const statuses = res.body;
  const errors =
    statuses.length > settle.length
      ? Buffer.from(statuses.buffer, statuses.byteOffset + settle.length, statuses.length - settle.length)
          .toString()
          .split("\n")
          .map((line) => MicroError.parse(line, "go.micro.broker"))
      : [];
  let failed = 0;
  settle.forEach((resolve, i) => {
    const status = statuses[i];
    if (status === Status.Delivered || status === Status.Gone) resolve(status);
    else resolve(errors[failed++] ?? internalServerError("go.micro.broker", `delivery ${i} has no status in the subscriber's answer`));
  });
}

function isEmpty(headers: Headers): boolean {
  for (const _ in headers) return false;
  return true;
}

/** One delivery of a batch as the subscriber reads it. */
export interface Delivery {
  subscriptionId: string;
  message: Message;
}

/**
 * The subscriber's side: runs a batch's deliveries and builds the answer. deliver never rejects: it
 * gives a status or the handler's error, as a promise only for handlers that are async.
 */
export async function receiveBatch(
  req: TransportRequest,
  maxMessageSize: number,
  errorId: string,
  deliver: (delivery: Delivery) => Outcome | Promise<Outcome>,
): Promise<TransportResponse | MicroError> {
  if (req.contentType !== BATCH_CONTENT_TYPE) return badRequest(errorId, `unsupported Content-Type ${req.contentType}`);
  const body = Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength);
  const outcomes: Array<Outcome | Promise<Outcome>> = [];
  let pending = false;
  for (let off = 0; off < body.length; ) {
    let delivery: Delivery;
    try {
      const idEnd = off + 2 + body.readUInt16BE(off);
      const subscriptionId = body.toString("utf8", off + 2, idEnd);
      const blockEnd = idEnd + 2 + body.readUInt16BE(idEnd);
      const header = blockEnd === idEnd + 2 ? {} : decodeHeaderBlock(body.subarray(idEnd + 2, blockEnd), false); // the header as published
      const length = body.readUInt32BE(blockEnd);
      const bodyStart = blockEnd + 4;
      off = bodyStart + length;
      if (off > body.length) throw new RangeError("delivery overruns the batch");
      if (length > maxMessageSize) {
        outcomes.push(requestEntityTooLarge(errorId, `message body of ${length} bytes exceeds the ${maxMessageSize} byte limit`));
        continue;
      }
      delivery = { subscriptionId, message: { header, body: body.subarray(bodyStart, off) } };
    } catch (err) {
      // What was delivered before stays delivered; the publisher hears that the batch was malformed.
      return badRequest(errorId, `malformed delivery batch: ${(err as Error).message}`);
    }
    const outcome = deliver(delivery);
    if (typeof outcome === "object" && "then" in outcome) pending = true;
    outcomes.push(outcome);
  }
  const settled = pending ? await Promise.all(outcomes) : (outcomes as Outcome[]);
  const statuses = Buffer.allocUnsafe(settled.length);
  const errors: MicroError[] = [];
  settled.forEach((outcome, i) => {
    if (typeof outcome === "number") statuses[i] = outcome;
    else {
      statuses[i] = Status.Failed;
      errors.push(outcome);
    }
  });
  return { contentType: BATCH_CONTENT_TYPE, body: errors.length === 0 ? statuses : Buffer.concat([statuses, Buffer.from(errors.map((e) => JSON.stringify(e)).join("\n"))]) };
}
