/**
 * What every pub/sub scenario shares: 200-byte event bodies stamped with their send time, and a
 * credit window so a publisher never runs more than PUBSUB_WINDOW events ahead of its subscriber
 * (without it a fast publisher would only measure how quickly queues fill). The subscriber hands
 * credits back over a plain loopback socket of the harness, outside the system being measured.
 */
import net from "node:net";
import { nowMs, type Recorder } from "./recorder.ts";

export const EVENT_BYTES = 200;
/** Events in flight between publisher and subscriber: 32 publishing loops × 32. */
export const PUBSUB_WINDOW = 1024;
/** The subscriber returns credits in batches, so the side channel costs next to nothing. */
const CREDIT_BATCH = 64;

/** A 200-byte body whose first 8 bytes are its send time (nowMs(), as a double). */
export function stampedBody(): Buffer {
  const body = Buffer.alloc(EVENT_BYTES, 0x61);
  body.writeDoubleBE(nowMs(), 0);
  return body;
}

export function sentAt(body: Uint8Array): number {
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength).readDoubleBE(0);
}

/** What every subscriber role returns as its info: where its publisher gets credits. */
export interface SubscriberInfo {
  creditPort: number;
}

export interface Receipts {
  port: number;
  /** Records the delivery of an event sent at sentAtMs and returns its credit. */
  received(sentAtMs: number): void;
}

/** The subscriber's side: listens for the publisher's credit connection. */
export async function receipts(recorder: Recorder): Promise<Receipts> {
  let publisher: net.Socket | undefined;
  let owed = 0;
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    publisher = socket;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const credit = Buffer.alloc(4);
  return {
    port: (server.address() as net.AddressInfo).port,
    received(sentAtMs) {
      recorder.record(nowMs() - sentAtMs);
      if (++owed < CREDIT_BATCH || !publisher) return;
      credit.writeUInt32BE(owed);
      publisher.write(Buffer.from(credit));
      owed = 0;
    },
  };
}

/**
 * The publisher's op: waits for credit, then publishes one event. A publish is not awaited before
 * the next (the window bounds what is in flight, and libraries differ in what their publish
 * waits for: nats.js returns at once, tsmicro's NATS broker after a server round trip); a publish
 * that fails fails the next op.
 */
export async function publishOp(subscriber: SubscriberInfo, publish: () => unknown, deliveriesPerPublish = 1): Promise<() => Promise<void>> {
  const acquire = await creditWindow(subscriber, deliveriesPerPublish);
  let failure: unknown;
  return async () => {
    if (failure) throw failure;
    await acquire();
    Promise.resolve(publish()).catch((err: unknown) => (failure ??= err));
  };
}

/**
 * Resolves once the publisher may send one more event. The window counts deliveries: an event to
 * n subscriptions takes n credits, and each delivery gives one back.
 */
async function creditWindow(subscriber: SubscriberInfo, cost: number): Promise<() => Promise<void> | undefined> {
  let inFlight = 0;
  const waiting: Array<() => void> = [];
  let partial: Buffer = Buffer.alloc(0);
  const socket = net.connect({ host: "127.0.0.1", port: subscriber.creditPort });
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  socket.on("data", (chunk: Buffer) => {
    partial = partial.length > 0 ? Buffer.concat([partial, chunk]) : chunk;
    let off = 0;
    for (; off + 4 <= partial.length; off += 4) inFlight -= partial.readUInt32BE(off);
    partial = partial.subarray(off);
    while (waiting.length > 0 && inFlight + cost <= Math.max(PUBSUB_WINDOW, cost)) {
      inFlight += cost;
      waiting.shift()!();
    }
  });
  return () => {
    if (inFlight + cost <= Math.max(PUBSUB_WINDOW, cost)) {
      inFlight += cost;
      return undefined;
    }
    return new Promise<void>((resolve) => waiting.push(resolve));
  };
}
