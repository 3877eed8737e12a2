/**
 * In-process broker; all instances in one process share one bus, so in-process services meet.
 * publish() resolves once the message is queued here; handlers run after, and nothing outlives the process.
 */
import { randomUUID } from "node:crypto";
import { checkMessage, checkQueue, checkTopic } from "./shared.ts";
import { noAck, type Broker, type BrokerOptions, type Handler, type Message, type SubscribeOptions, type Subscriber } from "./broker.ts";

interface MemorySubscription extends Subscriber {
  readonly id: string;
  readonly handler: Handler;
}

const bus = new Map<string, Set<MemorySubscription>>();
const roundRobin = new Map<string, number>();

function deliver(sub: MemorySubscription, topic: string, message: Message): Promise<void> {
  const copy: Message = { header: { ...message.header }, body: Uint8Array.from(message.body) };
  return Promise.resolve()
    .then(() => sub.handler({ topic, message: copy, ack: noAck }))
    .catch(() => {
      /* memory delivery is at-most-once: a failing handler only affects itself */
    });
}

export default class MemoryBroker implements Broker {
  private opts: BrokerOptions;
  private connected = false;
  private readonly mine = new Set<MemorySubscription>();

  constructor(opts: BrokerOptions = {}) {
    this.opts = opts;
  }

  init(opts: BrokerOptions): void {
    this.opts = { ...this.opts, ...opts };
  }

  options(): BrokerOptions {
    return this.opts;
  }

  address(): string {
    return "memory";
  }

  async connect(): Promise<void> {
    this.connected = true;
  }

  async disconnect(): Promise<void> {
    for (const sub of [...this.mine]) await sub.unsubscribe();
    this.connected = false;
  }

  async publish(topic: string, message: Message): Promise<void> {
    if (!this.connected) throw new Error("memory broker: not connected");
    checkTopic("memory", topic);
    checkMessage("memory", message);
    const subs = [...(bus.get(topic) ?? [])];
    const groups = new Map<string, MemorySubscription[]>();
    const deliveries: Promise<void>[] = [];
    for (const sub of subs) {
      const queue = sub.options.queue;
      if (!queue) deliveries.push(deliver(sub, topic, message));
      else groups.set(queue, [...(groups.get(queue) ?? []), sub]);
    }
    for (const [queue, members] of groups) {
      const key = `${topic}\0${queue}`;
      const i = roundRobin.get(key) ?? 0;
      roundRobin.set(key, i + 1);
      deliveries.push(deliver(members[i % members.length]!, topic, message));
    }
    // Deliver asynchronously like a real broker: publish does not wait for handlers.
    void Promise.all(deliveries);
  }

  async subscribe(topic: string, handler: Handler, opts: SubscribeOptions = {}): Promise<Subscriber> {
    if (!this.connected) throw new Error("memory broker: not connected");
    checkTopic("memory", topic);
    checkQueue("memory", opts.queue);
    const sub: MemorySubscription = {
      id: randomUUID(),
      topic,
      options: opts,
      handler,
      unsubscribe: async () => {
        bus.get(topic)?.delete(sub);
        this.mine.delete(sub);
      },
    };
    if (!bus.has(topic)) bus.set(topic, new Set());
    bus.get(topic)!.add(sub);
    this.mine.add(sub);
    return sub;
  }

  toString(): string {
    return "memory";
  }
}
