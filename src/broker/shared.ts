/**
 * What the network broker plugins (nats, mqtt, rabbitmq, redis, kafka, nsq, googlepubsub) share, so each plugin file
 * holds only its engine's specifics: options and server addresses, the connected-state and input
 * checks every publish/subscribe goes through, subscriber bookkeeping (disconnect() ends them all),
 * letting publishes under way finish before disconnect() closes,
 * running a handler with ack/nack, retrying with backoff, and the header envelope for engines
 * without native headers.
 */
import { MissingPackageError } from "../cmd/optional-package.ts";
import { defaultLogger, type Logger } from "../logger.ts";
import type {
  Broker,
  BrokerOptions,
  Event,
  Handler,
  Message,
  PublishOptions,
  SubscribeOptions,
  Subscriber,
} from "./broker.ts";

/** What network brokers' subscribe() takes besides the common options. */
export interface NetworkSubscribeOptions extends SubscribeOptions {
  /** Messages handed to this subscriber at a time before it acks (where the engine has such a window). */
  prefetch?: number;
}

export interface NetworkBrokerOptions extends BrokerOptions {
  /** How long publish/subscribe wait for a lost connection to come back before failing (default 10 000 ms). */
  reconnectWait?: number;
}

/** Bad input to publish/subscribe (topic, header, body): the message was not sent. */
export class BrokerInputError extends Error {
  override name = "BrokerInputError";
}

/** How a plugin settles one delivery with its engine. */
export interface Settlement {
  ack(): Promise<void>;
  /** The handler failed: make the engine deliver the message again (where it can). */
  nack(): Promise<void>;
}

/** Acks that have nothing to tell the engine (at-most-once deliveries). */
export const NOTHING_TO_SETTLE: Settlement = { ack: async () => {}, nack: async () => {} };

const DELIVERED = Promise.resolve();

/** Stops one subscription on the engine. */
export type StopListening = () => Promise<void>;

// Header keys travel as MIME-like header names on several engines (NATS, the http broker).
const HEADER_KEY = /^[!#-'*+\-.0-9A-Z^-z|~]+$/;
// Control characters (CR/LF split NATS header lines), lone surrogates and non-characters make
// Mosquitto drop the connection as "malformed UTF-8"; NATS and HTTP trim surrounding spaces.
// Values with any of these would not arrive as sent, or not at all.
const UNSENDABLE_TEXT = /[\p{Cc}\p{Cs}\p{Noncharacter_Code_Point}]/u;
const SURROUNDING_SPACE = /^ | $/;

export abstract class NetworkBroker implements Broker {
  protected opts: NetworkBrokerOptions;
  private connected = false;
  /** The disconnect() under way, if any: a second one, or a connect(), waits for it. */
  private disconnecting?: Promise<void>;
  private readonly subscribers = new Set<Subscriber>();
  /** Publishes under way that disconnect() waits for (closeFailsUnfinishedPublishes()). */
  private unfinishedPublishes = 0;
  /** Resolves disconnect()'s wait once the last counted publish finished. */
  private lastPublishFinished?: () => void;
  /** Topics that passed the publish checks: publishers repeat a few topics, the checks cost more than the lookup. */
  private readonly publishTopics = new Set<string>();

  protected constructor(
    /** Plugin name as used in --broker and in error messages. */
    protected readonly plugin: string,
    private readonly defaultAddress: string,
    opts: NetworkBrokerOptions,
  ) {
    this.opts = { ...opts };
  }

  /** Opens the engine connection(s). */
  protected abstract open(): Promise<void>;
  /** Closes them; subscriptions are already stopped. */
  protected abstract close(): Promise<void>;
  protected abstract send(topic: string, message: Message, opts: PublishOptions): Promise<void>;
  protected abstract listen(topic: string, handler: Handler, opts: NetworkSubscribeOptions): Promise<StopListening>;
  /** Engine-specific topic rules; returns why the topic is invalid, or undefined. */
  protected topicProblem(_topic: string, _use: "publish" | "subscribe"): string | undefined {
    return undefined;
  }

  init(opts: BrokerOptions): void {
    this.opts = { ...this.opts, ...opts };
    this.publishTopics.clear(); // plugin topic rules may depend on the options
  }

  options(): BrokerOptions {
    return this.opts;
  }

  address(): string {
    return this.serverAddresses().join(",");
  }

  toString(): string {
    return this.plugin;
  }

  async connect(): Promise<void> {
    await this.disconnecting?.catch(() => {}); // its caller sees how it failed
    if (this.connected) return;
    try {
      await this.open();
    } catch (err) {
      await this.close().catch(() => {});
      if (err instanceof MissingPackageError) throw err; // already the one line to show
      const detail = err instanceof AggregateError ? `${err.message} (${err.errors.at(-1)})` : String((err as Error)?.message ?? err);
      throw new Error(`${this.plugin} broker: cannot connect to ${this.address()}: ${detail}`, { cause: err });
    }
    this.connected = true;
  }

  /**
   * Refuses new publishes and subscribes at once ("not connected"), lets the publishes already
   * under way finish (for at most `reconnectWait` ms), ends the subscriptions, then closes: a
   * graceful shutdown (SIGTERM in a rolling deploy) neither drops nor fails what it published.
   */
  disconnect(): Promise<void> {
    if (!this.connected) return this.disconnecting ?? Promise.resolve();
    this.connected = false;
    this.disconnecting = (async () => {
      await this.publishesFinished();
      for (const sub of [...this.subscribers]) await sub.unsubscribe().catch(() => {});
      await this.close();
    })().finally(() => (this.disconnecting = undefined));
    return this.disconnecting;
  }

  /**
   * Whether this plugin's client fails a publish still under way (not yet sent, or awaiting the
   * server's confirmation) when the connection closes: then publish() counts each until it settles
   * and disconnect() waits for them. The others' clients send and confirm what they hold before
   * closing by themselves.
   */
  protected closeFailsUnfinishedPublishes(): boolean {
    return false;
  }

  private readonly publishFinished = () => {
    if (--this.unfinishedPublishes === 0) this.lastPublishFinished?.();
  };

  /** Waits until no counted publish is under way, for at most `reconnectWait` ms (then they fail as the connection closes). */
  private async publishesFinished(): Promise<void> {
    if (this.unfinishedPublishes === 0) return;
    const wait = this.reconnectWait();
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.lastPublishFinished = resolve;
      timer = setTimeout(resolve, wait);
    });
    clearTimeout(timer);
    this.lastPublishFinished = undefined;
    if (this.unfinishedPublishes > 0)
      this.log.warn({ broker: this.plugin, publishes: this.unfinishedPublishes }, `disconnecting with publishes unfinished after ${wait} ms`);
  }

  /** Not an async function: when send() hands many publishes one shared promise (NATS), a publish allocates none of its own. */
  publish(topic: string, message: Message, opts: PublishOptions = {}): Promise<void> {
    try {
      this.requireConnected();
      this.checkTopic(topic, "publish");
      this.checkMessage(message);
      if (!this.closeFailsUnfinishedPublishes()) return this.send(topic, message, opts);
      this.unfinishedPublishes++; // a count and one finally(): the plugins counted are the ones that await a confirmation anyway
      return this.send(topic, message, opts).finally(this.publishFinished);
    } catch (err) {
      return Promise.reject(err); // bad input rejects, as it did from an async function
    }
  }

  async subscribe(topic: string, handler: Handler, opts: NetworkSubscribeOptions = {}): Promise<Subscriber> {
    this.requireConnected();
    this.checkTopic(topic, "subscribe");
    checkQueue(this.plugin, opts.queue);
    const stop = await this.listen(topic, handler, opts);
    let stopped: Promise<void> | undefined;
    const subscriber: Subscriber = {
      topic,
      options: opts,
      unsubscribe: () => {
        this.subscribers.delete(subscriber);
        stopped ??= stop();
        return stopped;
      },
    };
    this.subscribers.add(subscriber);
    return subscriber;
  }

  /** host:port (or URL) of each server, from the options or the plugin's default. */
  protected serverAddresses(): string[] {
    return this.opts.addresses?.length ? this.opts.addresses : [this.defaultAddress];
  }

  /**
   * Server URLs for the client library: the URL the broker was chosen by when it already uses one
   * of the engine's own schemes (it may carry credentials or a vhost), else scheme://address.
   */
  protected serverUrls(schemes: readonly string[]): string[] {
    const url = typeof this.opts.url === "string" ? this.opts.url : undefined;
    if (url && schemes.some((s) => url.startsWith(`${s}://`))) return [url];
    return this.serverAddresses().map((a) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(a) ? a : `${schemes[0]}://${a}`));
  }

  /**
   * Runs the handler for one delivery: acks after it returns (autoAck) or when it calls ack(); nacks if it throws.
   * Not an async function: an at-most-once delivery to a handler that returns nothing allocates no promise.
   */
  protected deliver(
    handler: Handler,
    topic: string,
    message: Message,
    settlement: Settlement,
    opts: SubscribeOptions,
    error?: Error,
  ): Promise<void> {
    if (settlement !== NOTHING_TO_SETTLE) return this.deliverSettled(handler, topic, message, new SettleOnce(settlement, this.plugin, topic, this.log), opts, error);
    const event: Event = { topic, message, ack: settlement.ack };
    if (error) event.error = error;
    try {
      const done = handler(event);
      if (done !== undefined) return Promise.resolve(done).then(undefined, (err: unknown) => this.handlerFailed(topic, err));
    } catch (err) {
      this.handlerFailed(topic, err);
    }
    return DELIVERED;
  }

  private async deliverSettled(handler: Handler, topic: string, message: Message, once: SettleOnce, opts: SubscribeOptions, error?: Error): Promise<void> {
    // bind rather than an arrow: under tsx (esbuild keepNames) every named closure costs an
    // Object.defineProperty, per message here (12% of a NATS subscriber's CPU in the bench).
    const event: Event = { topic, message, ack: once.settle.bind(once, "ack") };
    if (error) event.error = error;
    try {
      await handler(event);
      if (opts.autoAck !== false) await once.settle("ack");
    } catch (err) {
      this.handlerFailed(topic, err);
      await once.settle("nack");
    }
  }

  private handlerFailed(topic: string, err: unknown): void {
    this.log.warn({ broker: this.plugin, topic, err: String(err) }, "subscriber handler failed");
  }

  /** How long operations wait for a server that is away (`reconnectWait`, default 10 000 ms). */
  protected reconnectWait(): number {
    return this.opts.reconnectWait ?? 10_000;
  }

  /** Waits for an operation that needs the connection, for at most `reconnectWait` ms while it is being restored. */
  protected whileReconnecting<T>(operation: Promise<T>): Promise<T> {
    const wait = this.reconnectWait();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.plugin} broker: not connected to ${this.address()} (still reconnecting after ${wait} ms)`)), wait);
    });
    return Promise.race([operation, timeout]).finally(() => clearTimeout(timer));
  }

  protected get log(): Logger {
    return this.opts.logger ?? defaultLogger();
  }

  protected warn(what: string, err: unknown): void {
    this.log.warn({ broker: this.plugin, err: String(err) }, what);
  }

  private requireConnected(): void {
    if (!this.connected) throw new Error(`${this.plugin} broker: not connected (call connect() first)`);
  }

  private checkTopic(topic: string, use: "publish" | "subscribe"): void {
    if (use === "publish" && this.publishTopics.has(topic)) return;
    checkTopic(this.plugin, topic, this.topicProblem(topic, use));
    if (use === "publish") {
      if (this.publishTopics.size >= 1024) this.publishTopics.clear();
      this.publishTopics.add(topic);
    }
  }

  private checkMessage(message: Message): void {
    checkMessage(this.plugin, message);
  }
}

/** The topic rules every broker shares; enginesProblem is the plugin's own verdict, if any. */
export function checkTopic(plugin: string, topic: string, enginesProblem?: string): void {
  const problem =
    typeof topic !== "string" || topic === ""
      ? "a topic must be a non-empty string"
      : /\s/.test(topic) || UNSENDABLE_TEXT.test(topic)
        ? "a topic cannot contain whitespace, control characters, lone surrogates or non-characters"
        : enginesProblem;
  if (problem) throw new BrokerInputError(`${plugin} broker: invalid topic ${JSON.stringify(topic)}: ${problem}`);
}

/** Headers and body every broker can carry unchanged. */
export function checkMessage(plugin: string, message: Message): void {
  if (!(message?.body instanceof Uint8Array)) throw new BrokerInputError(`${plugin} broker: message body must be a Uint8Array`);
  for (const [key, value] of Object.entries(message.header ?? {})) {
    if (!HEADER_KEY.test(key))
      throw new BrokerInputError(`${plugin} broker: invalid header key ${JSON.stringify(key)}: use letters, digits and -_.!#$%&'*+^|~`);
    if (typeof value !== "string" || UNSENDABLE_TEXT.test(value) || SURROUNDING_SPACE.test(value))
      throw new BrokerInputError(
        `${plugin} broker: invalid value of header ${key}: must be a string without control characters, lone surrogates, non-characters or surrounding spaces`,
      );
  }
}

/** The queue option every broker accepts. */
export function checkQueue(plugin: string, queue: unknown): void {
  if (queue !== undefined && (typeof queue !== "string" || queue === "")) throw new BrokerInputError(`${plugin} broker: queue must be a non-empty string`);
}

/** One delivery's settlement with its engine: at most one ack or nack. */
class SettleOnce {
  private settled = false;

  constructor(
    private readonly settlement: Settlement,
    private readonly plugin: string,
    private readonly topic: string,
    private readonly log: Logger,
  ) {}

  async settle(how: "ack" | "nack"): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    try {
      await this.settlement[how]();
    } catch (err) {
      // The connection went away: the engine redelivers what was not acked.
      this.log.warn({ broker: this.plugin, topic: this.topic, err: String(err) }, `${how} failed`);
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** Delay before retry number `failures` (1-based): 100 ms doubling up to 5 s. */
function backoff(failures: number): number {
  return Math.min(5_000, 100 * 2 ** Math.min(failures - 1, 6));
}

/**
 * Calls attempt until it succeeds, waiting with backoff after each failure (the engine is down or
 * restarting); undefined if the signal aborts first.
 */
export async function retry<T>(attempt: () => Promise<T>, signal: AbortSignal, onFailure: (err: unknown) => void): Promise<T | undefined> {
  for (let failures = 1; !signal.aborted; failures++) {
    try {
      return await attempt();
    } catch (err) {
      if (signal.aborted) break;
      onFailure(err);
      await sleep(backoff(failures), signal);
    }
  }
  return undefined;
}

/** Runs step over and over until the signal aborts, riding out failures: for read loops of clients that do not resume by themselves. */
export async function keepRunning(step: () => Promise<void>, signal: AbortSignal, onFailure: (err: unknown) => void): Promise<void> {
  while (!signal.aborted) await retry(step, signal, onFailure);
}

/**
 * The payload go-micro's nats, mqtt, redis, kafka and nsq brokers send: the JSON of its
 * broker.Message, {"Header":{…},"Body":"<base64>"} (the Go struct has no JSON tags; []byte is
 * base64). tsmicro uses it wherever an engine has no headers of its own or go-micro ignores them,
 * so Go and tsmicro nodes read each other's messages.
 */
interface WireMessage {
  Header?: Record<string, string> | null;
  Body?: string | null;
}

/** Byte for byte JSON.stringify({Header, Body}), built without stringifying (escape-scanning) the base64 body. */
export function encodeEnvelope(message: Message): Buffer {
  const body = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength).toString("base64");
  const header = JSON.stringify(message.header ?? {});
  // Without headers it is all ASCII, which latin1 copies without measuring UTF-8 first.
  if (header === "{}") return Buffer.from(`{"Header":{},"Body":"${body}"}`, "latin1");
  return Buffer.from(`{"Header":${header},"Body":"${body}"}`);
}

const isEnvelope = (v: unknown): v is WireMessage => {
  if (typeof v !== "object" || v === null || Array.isArray(v) || !("Header" in v || "Body" in v)) return false;
  const { Header, Body } = v as WireMessage;
  const headerOk = Header == null || (typeof Header === "object" && !Array.isArray(Header) && Object.values(Header).every((h) => typeof h === "string"));
  return headerOk && (Body == null || typeof Body === "string");
};

/** Decodes an envelope; bytes that are not one (another publisher) arrive as the body, with error set. */
export function decodeEnvelope(bytes: Uint8Array): { message: Message; error?: Error } {
  const raw = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const compact = decodeCompactEnvelope(raw);
  if (compact) return compact;
  let wire: unknown;
  try {
    wire = JSON.parse(raw.toString());
  } catch (err) {
    return { message: { header: {}, body: bytes }, error: new Error(`undecodable message: not JSON: ${(err as Error).message}`) };
  }
  if (!isEnvelope(wire)) return { message: { header: {}, body: bytes }, error: new Error("undecodable message: not a go-micro broker.Message") };
  return { message: { header: wire.Header ?? {}, body: Buffer.from(wire.Body ?? "", "base64") } };
}

const ENVELOPE_START = Buffer.from('{"Header":');
const BODY_KEY = Buffer.from(',"Body":"');

/**
 * The envelope as go-micro and tsmicro write it, {"Header":…,"Body":"<base64>"} with nothing
 * between the tokens, decoded without JSON-parsing (and so copying) the body; undefined when the
 * bytes have any other shape, for the JSON parser to judge. It gives what JSON.parse would: a body
 * of base64 characters only holds no quote, backslash or control character, so the header part
 * is a JSON value of its own.
 */
function decodeCompactEnvelope(raw: Buffer): { message: Message } | undefined {
  const end = raw.length - 2; // the body's closing quote
  if (end < 21 || raw[end] !== 0x22 || raw[end + 1] !== 0x7d) return undefined;
  const start = raw.lastIndexOf(0x22, end - 1) + 1;
  const headerEnd = start - BODY_KEY.length;
  if (headerEnd < ENVELOPE_START.length + 2 || !holdsAt(raw, headerEnd, BODY_KEY) || !holdsAt(raw, 0, ENVELOPE_START)) return undefined;
  const encoded = raw.toString("latin1", start, end);
  const body = Buffer.from(encoded, "base64");
  // A base64 decoder skips or stops at anything outside its alphabet: a byte short of what the
  // length promises means the body was not pure base64 (and might need JSON unescaping).
  const padding = encoded.endsWith("==") ? 2 : encoded.endsWith("=") ? 1 : 0;
  if (encoded.length % 4 !== 0 || body.length !== (encoded.length / 4) * 3 - padding) return undefined;
  if (headerEnd === ENVELOPE_START.length + 2 && raw[headerEnd - 2] === 0x7b && raw[headerEnd - 1] === 0x7d) return { message: { header: {}, body } };
  let header: unknown;
  try {
    header = JSON.parse(raw.toString("utf8", ENVELOPE_START.length, headerEnd));
  } catch {
    return undefined;
  }
  if (!isEnvelope({ Header: header })) return undefined;
  return { message: { header: (header as Record<string, string> | null) ?? {}, body } };
}

function holdsAt(bytes: Buffer, at: number, expected: Buffer): boolean {
  for (let i = 0; i < expected.length; i++) if (bytes[at + i] !== expected[i]) return false;
  return true;
}
