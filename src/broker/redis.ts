/**
 * Redis broker.
 *
 * - Subscribers without a queue use pub/sub on a channel named like the topic: fan-out,
 *   at-most-once (a subscriber misses what is published while it is disconnected).
 * - Queue groups use a Redis Stream per topic ("tsmicro:stream:<topic>") with one consumer group
 *   per queue: each message goes to one member and stays pending until acked. A message whose
 *   handler throws, or that sat unacked for `redeliverAfter` ms (its member vanished), is
 *   re-claimed by a member of the group.
 * - With `streams: true`, subscribers without a queue also read the stream, each through a
 *   consumer group of its own (removed when it unsubscribes): at-least-once fan-out.
 *
 * Messages travel in go-micro's JSON envelope (headers + base64 body). publish() runs one script that
 * PUBLISHes the message and, when the topic's stream exists (some group reads it), XADDs it
 * there, trimmed to about `maxLen` entries — so topics without groups store nothing.
 * publish() resolves once that script returned: the stream entry is then in Redis's memory (at
 * least once for the stream's readers), the pub/sub copy went to whoever was subscribed at that
 * moment (at most once). The client reconnects by itself and renews pub/sub subscriptions; stream
 * readers retry with backoff and recreate their group if the server came back without it. Stream
 * entries survive a server restart only if Redis persists them: run it with AOF on (appendonly
 * yes; appendfsync always, or a crash loses up to the last second).
 */
import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import type * as Redis from "redis";
import { importOptional } from "../cmd/optional-package.ts";
import type { Handler, Message } from "./broker.ts";
import {
  NOTHING_TO_SETTLE,
  NetworkBroker,
  decodeEnvelope,
  encodeEnvelope,
  keepRunning,
  type NetworkBrokerOptions,
  type NetworkSubscribeOptions,
  type StopListening,
} from "./shared.ts";

export interface RedisBrokerOptions extends NetworkBrokerOptions {
  /** Fan-out subscribers read streams too (at-least-once), instead of pub/sub. */
  streams?: boolean;
  /** Approximate number of entries a topic's stream keeps (default 10 000). */
  maxLen?: number;
  /** A pending message unacked this long is handed to another member (default 30 000 ms). */
  redeliverAfter?: number;
  /** Messages a stream reader takes at once (default 10). */
  prefetch?: number;
}

const STREAM_FIELD = "m";
// How long a stream read blocks; also bounds how soon a member notices messages to re-claim.
const READ_BLOCK_MS = 1_000;

const PUBLISH_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', '${STREAM_FIELD}', ARGV[2])
end
return redis.call('PUBLISH', ARGV[1], ARGV[2])`;

// A subscriber's own group goes when it does; the stream too once no group reads it.
const DESTROY_GROUP_SCRIPT = `
redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
if #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 0`;

// A queue member that leaves is forgotten unless it still holds pending messages (others re-claim those).
const FORGET_CONSUMER_SCRIPT = `
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return 0`;

function createBufferClient(redis: typeof Redis, url: string, stillConnecting: () => boolean) {
  return redis
    .createClient({
      url,
      socket: {
        connectTimeout: 5_000,
        // Fail the first connect clearly; afterwards keep trying, up to every 2 s.
        reconnectStrategy: (retries: number, cause: Error) => (stillConnecting() ? cause : Math.min(100 * 2 ** retries, 2_000)),
      },
    })
    .withTypeMapping({ [redis.RESP_TYPES.BLOB_STRING]: Buffer });
}
type BufferClient = ReturnType<typeof createBufferClient>;

interface StreamEntry {
  id: Buffer;
  message: Record<string, Buffer>;
}

export default class RedisBroker extends NetworkBroker {
  protected declare opts: RedisBrokerOptions;
  private client?: BufferClient;
  /** Connection for pub/sub subscriptions, opened on first use. */
  private pubsub?: Promise<BufferClient>;

  constructor(opts: RedisBrokerOptions = {}) {
    super("redis", "127.0.0.1:6379", opts);
  }

  protected async open(): Promise<void> {
    const redis = await importOptional<typeof Redis>("redis", "redis");
    let connecting = true;
    const client = createBufferClient(redis, this.serverUrls(["redis", "rediss"])[0]!, () => connecting);
    client.on("error", (err) => this.warn("connection error", err));
    await client.connect();
    connecting = false;
    this.client = client;
  }

  protected async close(): Promise<void> {
    const pubsub = await this.pubsub?.catch(() => undefined);
    pubsub?.destroy();
    this.pubsub = undefined;
    // close() lets pending replies arrive, but would wait forever for a server that is gone.
    if (this.client?.isReady) await this.client.close().catch(() => {});
    else this.client?.destroy();
    this.client = undefined;
  }

  protected async send(topic: string, message: Message): Promise<void> {
    const maxLen = String(this.opts.maxLen ?? 10_000);
    const script = this.client!.eval(PUBLISH_SCRIPT, { keys: [streamKey(topic)], arguments: [topic, encodeEnvelope(message), maxLen] });
    await this.whileReconnecting(script);
  }

  protected async listen(topic: string, handler: Handler, opts: NetworkSubscribeOptions): Promise<StopListening> {
    if (opts.queue || this.opts.streams) return this.readStream(topic, handler, opts);
    const subscriber = await this.pubsubClient();
    const listener = (payload: Buffer) => {
      const { message, error } = decodeEnvelope(payload);
      void this.deliver(handler, topic, message, NOTHING_TO_SETTLE, opts, error);
    };
    await this.whileReconnecting(subscriber.subscribe(topic, listener, true));
    return () => subscriber.unsubscribe(topic, listener, true);
  }

  private pubsubClient(): Promise<BufferClient> {
    this.pubsub ??= (async () => {
      const subscriber = this.client!.duplicate();
      subscriber.on("error", (err) => this.warn("pub/sub connection error", err));
      await subscriber.connect();
      return subscriber;
    })();
    return this.pubsub;
  }

  private async readStream(topic: string, handler: Handler, opts: NetworkSubscribeOptions): Promise<StopListening> {
    const client = this.client!;
    const key = streamKey(topic);
    const group = opts.queue ?? `tsmicro-${randomUUID()}`;
    const consumer = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    const count = Number(opts.prefetch ?? this.opts.prefetch ?? 10);
    const redeliverAfter = this.opts.redeliverAfter ?? 30_000;
    await this.whileReconnecting(this.createGroup(key, group));

    // Blocking reads get a connection of their own, so acks and publishes never wait behind them.
    const reader = client.duplicate();
    reader.on("error", (err) => this.warn(`stream reader of ${topic}`, err));
    await reader.connect();

    const handle = async (entries: Array<StreamEntry | null>) => {
      for (const entry of entries) {
        if (!entry) continue; // trimmed away while pending
        const id = entry.id.toString();
        const { message, error } = decodeEnvelope(entry.message[STREAM_FIELD] ?? Buffer.alloc(0));
        const settlement = {
          ack: async () => void (await client.xAck(key, group, id)),
          // Marks the entry as idle long enough for the next re-claim, by any member.
          nack: async () => void (await client.xClaimJustId(key, group, consumer, 0, id, { IDLE: redeliverAfter })),
        };
        await this.deliver(handler, topic, message, settlement, opts, error);
      }
    };

    const stopped = new AbortController();
    let claimCursor = "0-0";
    const loop = keepRunning(
      async () => {
        try {
          const claimed = await reader.xAutoClaim(key, group, consumer, redeliverAfter, claimCursor, { COUNT: count });
          claimCursor = claimed.nextId.toString();
          await handle(claimed.messages as Array<StreamEntry | null>);
          const read = await reader.xReadGroup(group, consumer, { key, id: ">" }, { COUNT: count, BLOCK: READ_BLOCK_MS });
          await handle((read?.[0]?.messages ?? []) as StreamEntry[]);
        } catch (err) {
          // The server came back without our group (it does not persist): start it again.
          if (!String(err).includes("NOGROUP")) throw err;
          await this.createGroup(key, group);
        }
      },
      stopped.signal,
      (err) => this.warn(`reading stream ${key}`, err),
    );

    return async () => {
      stopped.abort();
      reader.destroy(); // ends a blocked read
      await loop;
      const cleanup = opts.queue
        ? client.eval(FORGET_CONSUMER_SCRIPT, { keys: [key], arguments: [group, consumer] })
        : client.eval(DESTROY_GROUP_SCRIPT, { keys: [key], arguments: [group] });
      await cleanup.catch((err) => this.warn(`cleaning up group ${group} of ${key}`, err));
    };
  }

  private async createGroup(key: string, group: string): Promise<void> {
    try {
      // "$": a new group gets what is published from now on, like every other subscription.
      await this.client!.xGroupCreate(key, group, "$", { MKSTREAM: true });
    } catch (err) {
      if (!String(err).includes("BUSYGROUP")) throw err;
    }
  }
}

export function streamKey(topic: string): string {
  return `tsmicro:stream:${topic}`;
}
