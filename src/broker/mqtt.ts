/**
 * MQTT 5 broker, on the wire as go-micro's mqtt broker: the payload is go-micro's JSON
 * broker.Message envelope (headers and base64 body) and the topic is the MQTT topic unchanged
 * ("go.micro.srv.message" is one level), QoS 1 by default. A payload that is no envelope (another
 * MQTT client) arrives as the body, with the message's MQTT 5 user properties as headers.
 * `topicLevels: true` maps a topic's dots to levels instead ("go.micro.srv.message" →
 * "go/micro/srv/message", with the characters MQTT gives a meaning to escaped, so a topic never
 * turns into a wildcard, a system topic or another level), and `envelope: false` publishes the
 * raw body with the headers as MQTT 5 user properties: for fleets of MQTT clients other than
 * go-micro's. Queue groups are shared subscriptions ($share/<group>/<topic>; go-micro's mqtt broker
 * has none, so a go-micro subscriber gets every message); `qos` (0, 1, 2; default 1) is a broker,
 * publish or subscribe option.
 *
 * One connection carries all subscriptions of the broker. The server keeps one subscription per
 * topic filter and client, so local subscribers of the same filter share it: each server
 * subscription carries a subscription identifier, and an incoming message goes to the local
 * subscribers of the identifiers it names (all of them, or one in turn for a queue group).
 * The client reconnects and resubscribes by itself; publish() waits up to `reconnectWait` ms meanwhile.
 * publish() resolves on the server's PUBACK (QoS 1; PUBCOMP for 2, once written for 0): accepted
 * and routed. Without `durable` the sessions are clean, so a restart loses what the server held.
 *
 * With `durable: true` the connection keeps a persistent session (clean start off, session expiry
 * `sessionExpiry` s): the server holds the session's subscriptions and its unacknowledged QoS 1
 * messages while the client is away and — if the server persists its state (Mosquitto's
 * `persistence true`) — across a server restart. Mosquitto 2.0 restores a session's plain
 * subscriptions but not its shared ones, so the broker renews every subscription when it finds its
 * session restored; a queue group misses what is published before its members are back. Each
 * message is acknowledged (PUBACK) only after its handlers have returned, so a subscriber that dies
 * mid-handler gets it again; deliveries on one connection then run one after another. A handler that throws is acknowledged too: MQTT has no
 * negative acknowledgement, and holding the PUBACK back would stop the connection.
 */
import { randomUUID } from "node:crypto";
import type * as Mqtt from "mqtt";
import { importOptional } from "../cmd/optional-package.ts";
import type { Handler, Message, PublishOptions } from "./broker.ts";
import { BrokerInputError, NOTHING_TO_SETTLE, NetworkBroker, decodeEnvelope, encodeEnvelope, type NetworkBrokerOptions, type NetworkSubscribeOptions, type StopListening } from "./shared.ts";

export interface MqttBrokerOptions extends NetworkBrokerOptions {
  /** Default QoS of publish and subscribe. */
  qos?: 0 | 1 | 2;
  /** Persistent session, PUBACK after the handlers (see above). */
  durable?: boolean;
  /**
   * The session's client id. Give a stable one (per service instance) to resume a durable session
   * after a process restart; without one the id lives as long as this broker object, and
   * disconnect() ends the session.
   */
  clientId?: string;
  /** Seconds the server keeps a durable session while the client is away (default 3600). */
  sessionExpiry?: number;
  /** Map a topic's dots to MQTT levels (default false: the topic unchanged, as go-micro does). */
  topicLevels?: boolean;
  /** Publish go-micro's JSON envelope (default true); false: the raw body, headers as MQTT 5 user properties. */
  envelope?: boolean;
}

type QoS = 0 | 1 | 2;

/** A publish's QoS, instead of the broker's default. */
export interface MqttPublishOptions extends PublishOptions {
  qos?: QoS;
}

/** A subscription's QoS, instead of the broker's default. */
export interface MqttSubscribeOptions extends NetworkSubscribeOptions {
  qos?: QoS;
}

interface LocalSubscriber {
  handler: Handler;
  opts: MqttSubscribeOptions;
}

/** One server subscription (one topic filter) and the local subscribers sharing it. */
interface FilterSubscription {
  readonly filter: string;
  readonly identifier: number;
  readonly queueGroup: boolean;
  readonly qos: QoS;
  readonly subscribers: LocalSubscriber[];
  /** Resolves once the server has acknowledged the subscription. */
  ready: Promise<void>;
  /** Next queue-group member to receive a message. */
  turn: number;
}

const MAX_TOPIC_BYTES = 65_535;

export default class MqttBroker extends NetworkBroker {
  protected declare opts: MqttBrokerOptions;
  private client?: Mqtt.MqttClient;
  private readonly byFilter = new Map<string, FilterSubscription>();
  private readonly byIdentifier = new Map<number, FilterSubscription>();
  private lastIdentifier = 0;
  /** Kept across reconnects, so a durable session is resumed after a server restart. */
  private readonly generatedClientId = `tsmicro-${randomUUID()}`;

  constructor(opts: MqttBrokerOptions = {}) {
    super("mqtt", "127.0.0.1:1883", opts);
  }

  protected async open(): Promise<void> {
    const mqtt = await importOptional<typeof Mqtt>("mqtt", "mqtt");
    const client = await mqtt.connectAsync(
      this.serverUrls(["mqtt", "mqtts", "ws", "wss"])[0]!,
      {
        protocolVersion: 5,
        clientId: this.opts.clientId ?? this.generatedClientId,
        clean: !this.opts.durable,
        ...(this.opts.durable ? { properties: { sessionExpiryInterval: this.opts.sessionExpiry ?? 3600 } } : {}),
        reconnectPeriod: 500,
        connectTimeout: 10_000,
      },
      false,
    );
    // Errors after the first connect are connection losses the client recovers from.
    client.on("error", (err) => this.warn("connection error", err));
    // mqtt.js subscribes again only when the server lost the session; a restored one may lack
    // subscriptions (Mosquitto 2.0 does not restore shared ones), so durable sessions renew them all.
    client.on("connect", (connack) => {
      if (!connack.sessionPresent) return;
      for (const shared of this.byFilter.values())
        this.subscribeOnServer(shared).catch((err) => this.warn(`subscribing again to ${shared.filter} failed`, err));
    });
    if (this.opts.durable) {
      // mqtt.js sends the PUBACK once this callback runs: after the handlers.
      client.handleMessage = (packet, done) => void this.dispatch(packet.topic, packet.payload as Buffer, packet).then(() => done(), done);
    } else {
      client.on("message", (topic, payload, packet) => void this.dispatch(topic, payload, packet));
    }
    this.client = client;
  }

  protected async close(): Promise<void> {
    // A session nobody can resume (generated id) ends with the connection instead of expiring later.
    const endsSession = this.opts.durable && !this.opts.clientId;
    await this.client?.endAsync(endsSession ? { properties: { sessionExpiryInterval: 0 } } : {});
    this.client = undefined;
  }

  protected override topicProblem(topic: string, use: "publish" | "subscribe"): string | undefined {
    if (Buffer.byteLength(this.mqttTopic(topic)) > MAX_TOPIC_BYTES) return `longer than MQTT's ${MAX_TOPIC_BYTES}-byte limit`;
    if (this.opts.topicLevels) return undefined;
    if (topic.includes("\0")) return "MQTT topics cannot hold NUL";
    if (use === "publish" && /[+#]/.test(topic)) return "MQTT wildcards (+ and #) cannot be published to";
    return undefined;
  }

  protected async send(topic: string, message: Message, opts: MqttPublishOptions): Promise<void> {
    const qos = this.qos(opts);
    let payload: Buffer;
    let properties = {};
    if (this.opts.envelope === false) {
      payload = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength);
      // An empty user-property list makes mqtt.js send a packet Mosquitto drops: send none instead.
      if (Object.keys(message.header).length > 0) properties = { userProperties: message.header };
    } else {
      payload = encodeEnvelope(message);
    }
    // While reconnecting, mqtt.js queues the message and resolves once the server acks it.
    await this.whileReconnecting(this.client!.publishAsync(this.mqttTopic(topic), payload, { qos, properties }));
  }

  protected async listen(topic: string, handler: Handler, opts: MqttSubscribeOptions): Promise<StopListening> {
    const qos = this.qos(opts);
    const filter = opts.queue ? `$share/${escapeReserved(opts.queue)}/${this.mqttTopic(topic)}` : this.mqttTopic(topic);
    let shared = this.byFilter.get(filter);
    if (!shared) {
      const identifier = ++this.lastIdentifier;
      const created: FilterSubscription = { filter, identifier, queueGroup: !!opts.queue, qos, subscribers: [], ready: Promise.resolve(), turn: 0 };
      created.ready = this.subscribeOnServer(created);
      this.byFilter.set(filter, created);
      this.byIdentifier.set(identifier, created);
      shared = created;
    }
    const subscriber: LocalSubscriber = { handler, opts };
    shared.subscribers.push(subscriber);
    try {
      await shared.ready;
    } catch (err) {
      this.forget(shared);
      throw err;
    }
    return async () => {
      shared.subscribers.splice(shared.subscribers.indexOf(subscriber), 1);
      if (shared.subscribers.length > 0) return;
      this.forget(shared);
      await this.client?.unsubscribeAsync(filter).catch(() => {});
    };
  }

  private async subscribeOnServer(shared: FilterSubscription): Promise<void> {
    // resubscribe: send it even when mqtt.js believes the filter is subscribed (a restored session).
    const filters = { [shared.filter]: { qos: shared.qos }, resubscribe: true } as Mqtt.ISubscriptionMap;
    const granted = await this.client!.subscribeAsync(filters, { properties: { subscriptionIdentifier: shared.identifier } });
    const refused = granted.find((g) => g.qos >= 0x80);
    if (refused) throw new Error(`mqtt broker: the server refused the subscription to ${shared.filter} (reason code 0x${refused.qos.toString(16)})`);
  }

  private forget(shared: FilterSubscription): void {
    if (this.byFilter.get(shared.filter) === shared) this.byFilter.delete(shared.filter);
    this.byIdentifier.delete(shared.identifier);
  }

  private dispatch(mqttTopic: string, payload: Buffer, packet: Mqtt.IPublishPacket): Promise<unknown> {
    const ids = packet.properties?.subscriptionIdentifier ?? [];
    const envelope = decodeEnvelope(payload);
    const { header, body } = envelope.error ? { header: userProperties(packet), body: payload } : envelope.message;
    const topic = this.opts.topicLevels ? fromMqttTopic(mqttTopic) : mqttTopic;
    const deliveries: Promise<void>[] = [];
    for (const id of Array.isArray(ids) ? ids : [ids]) {
      const shared = this.byIdentifier.get(id);
      if (!shared || shared.subscribers.length === 0) continue;
      const receivers = shared.queueGroup ? [shared.subscribers[shared.turn++ % shared.subscribers.length]!] : shared.subscribers;
      for (const { handler, opts } of receivers) deliveries.push(this.deliver(handler, topic, { header: { ...header }, body }, NOTHING_TO_SETTLE, opts));
    }
    return Promise.all(deliveries);
  }

  private mqttTopic(topic: string): string {
    return this.opts.topicLevels ? toMqttTopic(topic) : topic;
  }

  private qos(opts: MqttPublishOptions | MqttSubscribeOptions): QoS {
    const qos = opts.qos ?? this.opts.qos ?? 1;
    if (qos !== 0 && qos !== 1 && qos !== 2) throw new BrokerInputError(`mqtt broker: qos must be 0, 1 or 2, not ${JSON.stringify(qos)}`);
    return qos;
  }
}

/** A packet's MQTT 5 user properties as headers (the first value of a repeated key). */
function userProperties(packet: Mqtt.IPublishPacket): Record<string, string> {
  const header: Record<string, string> = {};
  for (const [key, value] of Object.entries(packet.properties?.userProperties ?? {})) header[key] = Array.isArray(value) ? value[0]! : value;
  return header;
}

/** Percent-encodes what MQTT gives a meaning to (level separator, wildcards, $-topics, NUL) and the escape character itself. */
function escapeReserved(text: string): string {
  return text.replace(/[%/+#$\0]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`);
}

export function toMqttTopic(topic: string): string {
  return escapeReserved(topic).replaceAll(".", "/");
}

export function fromMqttTopic(mqttTopic: string): string {
  return mqttTopic.replaceAll("/", ".").replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}
