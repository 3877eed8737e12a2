/** A broker plugin written outside tsmicro: it decorates another broker and stamps every message it publishes. */
import type { Broker, BrokerOptions, Handler, Message, PublishOptions, SubscribeOptions, Subscriber } from "../../../src/index.ts";

export const STAMP = "X-Stamped-By";

export default class StampedBroker implements Broker {
  constructor(private readonly inner: Broker) {}

  init(opts: BrokerOptions): Promise<void> | void {
    return this.inner.init(opts);
  }
  options(): BrokerOptions {
    return this.inner.options();
  }
  address(): string {
    return this.inner.address();
  }
  connect(): Promise<void> {
    return this.inner.connect();
  }
  disconnect(): Promise<void> {
    return this.inner.disconnect();
  }
  publish(topic: string, message: Message, opts?: PublishOptions): Promise<void> {
    return this.inner.publish(topic, { ...message, header: { ...message.header, [STAMP]: `stamped over ${this.inner}` } }, opts);
  }
  subscribe(topic: string, handler: Handler, opts?: SubscribeOptions): Promise<Subscriber> {
    return this.inner.subscribe(topic, handler, opts);
  }
  toString(): string {
    return "stamped";
  }
}
