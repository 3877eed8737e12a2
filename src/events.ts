/**
 * Typed events on top of any broker: the body is encoded with the codec its Content-Type names —
 * protobuf for @bufbuild/protobuf messages, JSON for plain objects — and decoded by that header on
 * receipt. This is the answer to the tutorial's complaint that broker bodies are stuck with JSON.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import type { Broker, Event, SubscribeOptions, Subscriber } from "./broker/broker.ts";
import { JSON_TYPE, PROTOBUF_TYPE, codecFor, isProtoMessage } from "./codec/codec.ts";
import { logger, type Logger } from "./logger.ts";
import { wrap, type SubscriberFunc, type SubscriberWrapper } from "./wrapper/wrapper.ts";

export const CONTENT_TYPE = "Content-Type";
/** Names the protobuf type of a body, so a receiver holding several schemas can pick one. */
export const MESSAGE_TYPE = "Micro-Message-Type";
export const TOPIC = "Micro-Topic";

const knownSchemas = new Map<string, DescMessage>();

/** Makes protobuf types known, so publish() can encode their messages and subscribe() decode them. */
export function registerTypes(...schemas: DescMessage[]): void {
  for (const s of schemas) knownSchemas.set(s.typeName, s);
}

export interface PublishEventOptions {
  header?: Record<string, string>;
  /** The message's protobuf type, if it was not registered with registerTypes(). */
  schema?: DescMessage;
  /** Force a codec, e.g. proto3 JSON for a protobuf message: "application/json". */
  contentType?: string;
}

export interface EncodedEvent {
  header: Record<string, string>;
  body: Uint8Array;
}

/** Encodes message for the wire as publish() would. */
export function encodeEvent(topic: string, message: unknown, opts: PublishEventOptions = {}): EncodedEvent {
  const schema = opts.schema ?? (isProtoMessage(message) ? knownSchemas.get(message.$typeName) : undefined);
  if (isProtoMessage(message) && !schema) {
    throw new TypeError(`no schema for protobuf type ${message.$typeName}: pass {schema} or call registerTypes()`);
  }
  // Publishing with an explicit schema teaches this process the type for later publishes.
  if (opts.schema) registerTypes(opts.schema);
  const contentType = opts.contentType ?? (schema ? PROTOBUF_TYPE : JSON_TYPE);
  const codec = codecFor(contentType);
  if (!codec) throw new TypeError(`unsupported Content-Type ${contentType}`);
  const header: Record<string, string> = { ...opts.header, [CONTENT_TYPE]: codec.contentType, [TOPIC]: topic };
  if (schema) header[MESSAGE_TYPE] = schema.typeName;
  return { header, body: codec.encode(message, schema) };
}

export async function publishEvent(broker: Broker, topic: string, message: unknown, opts?: PublishEventOptions): Promise<void> {
  await broker.publish(topic, encodeEvent(topic, message, opts));
}

export interface SubscribeEventOptions extends SubscribeOptions {
  /** The protobuf type expected on this topic (otherwise found by the Micro-Message-Type header). */
  schema?: DescMessage;
  /** Where an event that cannot be decoded is reported; default: the default logger. */
  logger?: Logger;
}

export type EventHandler<T> = (message: T, event: Event) => void | Promise<void>;

/** Decodes an event's body by its Content-Type header. */
export function decodeEvent<T>(event: Event, schema?: DescMessage): T {
  const header = event.message.header;
  const codec = codecFor(header[CONTENT_TYPE]);
  if (!codec) throw new TypeError(`unsupported Content-Type ${header[CONTENT_TYPE]}`);
  const type = schema ?? (header[MESSAGE_TYPE] ? knownSchemas.get(header[MESSAGE_TYPE]) : undefined);
  return codec.decode(event.message.body, type) as T;
}

/** Subscribes handler to topic; wrappers (the first outermost) see each event before its body is decoded. */
export function subscribeEvent<T = unknown>(
  broker: Broker,
  topic: string,
  handler: EventHandler<T>,
  opts: SubscribeEventOptions = {},
  wrappers?: readonly SubscriberWrapper[],
): Promise<Subscriber> {
  const { schema, logger: log = logger, ...brokerOpts } = opts;
  if (schema) registerTypes(schema);
  const deliver: SubscriberFunc = async (event) => {
    let message: T;
    try {
      message = decodeEvent<T>(event, schema);
    } catch (err) {
      // Redelivering a body that cannot be decoded would loop forever: report it and move on.
      log.error({ topic, header: event.message.header, err: (err as Error).message }, "cannot decode event; dropped");
      return;
    }
    await handler(message, event);
  };
  return broker.subscribe(topic, wrap(deliver, wrappers), brokerOpts);
}
