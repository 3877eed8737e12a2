/** Broker contract: the seed's go-micro method set, in TypeScript. */
import type { Registry } from "../registry/registry.ts";
import type { Auth } from "../auth/auth.ts";
import type { ClientTLS, ServerTLS } from "../transport/transport.ts";
import type { Logger } from "../logger.ts";

export interface Message {
  header: Record<string, string>;
  body: Uint8Array;
}

export interface Event {
  topic: string;
  message: Message;
  /** Acknowledges the message (needed when subscribed with autoAck: false). */
  ack(): Promise<void>;
  /** Set when the broker could not decode or deliver the message to this handler. */
  error?: Error;
}

/** A handler that throws (or rejects) tells at-least-once brokers to redeliver. */
export type Handler = (event: Event) => Promise<void> | void;

/** What every broker's subscribe() takes; plugins extend it with their own (e.g. NetworkSubscribeOptions' prefetch). */
export interface SubscribeOptions {
  /** Queue group: each message goes to one subscriber of the group. */
  queue?: string;
  /** Ack after the handler returns (default true). With false the handler calls event.ack(). */
  autoAck?: boolean;
}

/** Options of one publish: none in common; plugins extend it with their own (e.g. MqttPublishOptions' qos). */
export interface PublishOptions {}

export interface Subscriber {
  readonly topic: string;
  readonly options: SubscribeOptions;
  unsubscribe(): Promise<void>;
}

export interface BrokerOptions {
  /** Server addresses (host:port or URLs). */
  addresses?: string[];
  /** The URI the broker was chosen by, without its query (it may carry credentials or a vhost). */
  url?: string;
  /** Used by brokers that find subscribers through the registry (http). */
  registry?: Registry;
  /** Seconds; how long registry entries of subscribers live (http broker). */
  registerTTL?: number;
  /** Seconds; how often those entries are renewed. */
  registerInterval?: number;
  /** Milliseconds a delivery's HTTP headers may take from its first byte (http broker); default 10000. */
  headerTimeoutMs?: number;
  /** Milliseconds a whole delivery may take to arrive (http broker); default 30000. */
  readTimeoutMs?: number;
  /** Checks deliveries' credentials before their body is read, and sends its own with each (http broker); off by default. */
  auth?: Auth;
  /** Largest message body accepted, in bytes (http broker); default 4 MiB. */
  maxMessageSize?: number;
  /** Serve subscriptions over TLS (mutual TLS with clientCA), advertised as secure=true (http broker). */
  tls?: ServerTLS;
  /** How to verify (and, for mutual TLS, present a certificate to) subscribers that advertise secure=true (http broker). */
  clientTLS?: ClientTLS;
  /** Where the broker logs (a service passes its own); default: the default logger. */
  logger?: Logger;
}

export interface Broker {
  init(opts: BrokerOptions): Promise<void> | void;
  options(): BrokerOptions;
  address(): string;
  connect(): Promise<void>;
  /** Publishes already under way are sent (and confirmed, where publish() waits for that) before the connection closes. */
  disconnect(): Promise<void>;
  /**
   * What resolving promises differs per broker and mode (each plugin's doc comment, and the README's
   * "Delivery guarantees" table): from "the engine stored it" (JetStream, RabbitMQ confirms, Kafka
   * acks=all, Redis streams, Pub/Sub, NSQ) to "the engine received it" (NATS core, MQTT without a
   * persistent session, Redis pub/sub), which a restart can lose.
   */
  publish(topic: string, message: Message, opts?: PublishOptions): Promise<void>;
  subscribe(topic: string, handler: Handler, opts?: SubscribeOptions): Promise<Subscriber>;
  toString(): string;
}

/** The ack() of brokers that have nothing to acknowledge. */
export const noAck = async (): Promise<void> => {};
