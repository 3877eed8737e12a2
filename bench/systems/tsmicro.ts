/**
 * tsmicro's roles. Server and client run in separate processes, each with its own isolated
 * memory registry: the client registers the server's record (passed on by the harness), so every
 * call still goes through the selector and registry as in production, without cross-process
 * discovery traffic (mdns) adding noise to the measurement.
 */
import { Client } from "../../src/client/client.ts";
import HttpBroker, { HTTP_BROKER_SERVICE } from "../../src/broker/http.ts";
import NatsBroker from "../../src/broker/nats.ts";
import type { Broker } from "../../src/broker/broker.ts";
import MemoryRegistry from "../../src/registry/memory.ts";
import type { Service as ServiceRecord } from "../../src/registry/registry.ts";
import { Service } from "../../src/service.ts";
import { publishOp, receipts, sentAt, stampedBody, type SubscriberInfo } from "../pubsub.ts";
import { Recorder } from "../recorder.ts";
import type { RoleContext, Roles } from "../role.ts";
import { checkEchoResponse, echoRequest, hello, type EchoRequest } from "./echo.ts";

const SERVICE = "bench.greeter";
/** Nothing but the 200-byte body, as the raw NATS client sends it (headers cost nats.js ~1 µs per message each side). */
const NO_HEADERS = {};

async function startService(broker: string): Promise<Service> {
  const service = new Service({ name: SERVICE, registry: new MemoryRegistry({ isolated: true }), broker, handleSignals: false });
  service.init([]);
  service.handle("Greeter.Hello", (req: EchoRequest) => hello(req));
  await service.start();
  return service;
}

async function rpcClient(ctx: RoleContext, transport: "tcp" | "http") {
  const registry = new MemoryRegistry({ isolated: true });
  const record = ctx.peer as ServiceRecord;
  await registry.register(record);
  // More nodes of the service, all at the server's address: the selector chooses among them all.
  const [node] = record.nodes;
  for (let i = 1; i < (ctx.params.nodes ?? 1); i++) await registry.register({ ...record, nodes: [{ ...node!, id: `${node!.id}-${i}` }] });
  const client = new Client({ registry, transport });
  const request = echoRequest(ctx.params.payload);
  const op = () => client.call(SERVICE, "Greeter.Hello", request);
  checkEchoResponse(await op(), request);
  return { op };
}

async function subscriber(broker: Broker, registry: MemoryRegistry | undefined, ctx: RoleContext) {
  await broker.connect();
  const recorder = new Recorder();
  const credits = await receipts(recorder);
  const topic = `${ctx.namespace}.events`;
  // Every subscription records its deliveries and returns their credits (the publisher takes one per subscription).
  for (let i = 0; i < (ctx.params.subscribers ?? 1); i++) await broker.subscribe(topic, (event) => credits.received(sentAt(event.message.body)));
  // The http broker's publisher finds subscribers in its registry: hand it this one's records.
  const records = registry ? await registry.getService(HTTP_BROKER_SERVICE) : [];
  return { info: { creditPort: credits.port, records }, recorder };
}

async function publisher(broker: Broker, ctx: RoleContext) {
  await broker.connect();
  const topic = `${ctx.namespace}.events`;
  const deliveries = ctx.params.subscribers ?? 1;
  return { op: await publishOp(ctx.peer as SubscriberInfo, () => broker.publish(topic, { header: NO_HEADERS, body: stampedBody() }), deliveries) };
}

export const roles: Roles = {
  server: async () => ({ info: await (await startService("memory")).describe() }),
  "tcp-client": (ctx) => rpcClient(ctx, "tcp"),
  "http-client": (ctx) => rpcClient(ctx, "http"),
  /** A service as users start one: one endpoint, the default (http) broker, nothing else to do. */
  idle: async () => {
    await startService("http");
    return {};
  },
  "nats-subscriber": (ctx) => subscriber(new NatsBroker(), undefined, ctx),
  "nats-publisher": (ctx) => publisher(new NatsBroker(), ctx),
  "http-broker-subscriber": (ctx) => {
    const registry = new MemoryRegistry({ isolated: true });
    return subscriber(new HttpBroker({ registry }), registry, ctx);
  },
  "http-broker-publisher": async (ctx) => {
    const registry = new MemoryRegistry({ isolated: true });
    for (const record of (ctx.peer as SubscriberInfo & { records: ServiceRecord[] }).records) await registry.register(record);
    return publisher(new HttpBroker({ registry }), ctx);
  },
};
