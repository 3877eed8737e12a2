/**
 * One OpenTelemetry trace across real processes and a real broker: this process (the client,
 * with the SDK's in-memory exporter) → service A → publish → subscriber B → call to service C.
 * A, B and C run the SDK too and write each ended span to stdout; the test checks that every
 * span has the client's trace id and the parent links of go-micro's wrappers, the attributes,
 * and that a log line C makes inside the call carries that trace's ids. One hop of each trace
 * goes over the tcp transport and one over go-micro's HTTP transport; each broker case runs it.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { Service, notFound } from "../../src/index.ts";
import { canConnect, skipOrFail, startTs, waitUntil, type Proc } from "../helpers/net.ts";

const fixture = fileURLToPath(new URL("./fixtures/traced-node.ts", import.meta.url));
const exporter = new InMemorySpanExporter();
new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).register();

interface SpanLine {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: SpanKind;
  attributes: Record<string, unknown>;
}

const unique = (what: string) => `${what}_${randomUUID().slice(0, 8)}`;
const procs: Proc[] = [];
const services: Service[] = [];
after(async () => {
  for (const s of services) await s.stop();
  for (const p of procs) p.signal("SIGKILL");
});

async function startNode(role: string, args: string[], flags: string[]): Promise<Proc> {
  const proc = startTs(fixture, [role, ...args, ...flags], { env: { ...process.env, MICRO_LOG_LEVEL: "info" } });
  procs.push(proc);
  await proc.waitForLine(/^ready /, 30_000);
  return proc;
}

const spansOf = (proc: Proc): SpanLine[] =>
  proc
    .stdout()
    .split("\n")
    .filter((line) => line.startsWith("span "))
    .map((line) => JSON.parse(line.slice(5)) as SpanLine);

const cases = [
  { broker: "http", clientTransport: "tcp", bTransport: "http", needs: undefined },
  { broker: "nats", clientTransport: "http", bTransport: "tcp", needs: 4222 },
];

describe("one trace across processes: client → A → publish → subscriber B → C", () => {
  for (const c of cases) {
    test(`through the ${c.broker} broker (client→A over ${c.clientTransport}, B→C over ${c.bTransport})`, async (t) => {
      if (c.needs && !(await canConnect(c.needs))) return skipOrFail(t, `${c.broker} is not listening on 127.0.0.1:${c.needs}`, true);
      const [aName, bName, cName] = [unique("trace_a"), unique("trace_b"), unique("trace_c")];
      const topic = unique("trace.topic");
      const common = [`--broker=${c.broker}`];
      const cProc = await startNode("c", [], [...common, `--server_name=${cName}`]);
      const bProc = await startNode("b", [topic, cName], [...common, `--server_name=${bName}`, `--transport=${c.bTransport}`]);
      const aProc = await startNode("a", [topic], [...common, `--server_name=${aName}`]);

      const client = new Service({ name: unique("trace_client"), broker: c.broker, transport: c.clientTransport, handleSignals: false });
      services.push(client);
      const step = randomUUID();
      exporter.reset();
      const answer = await trace.getTracer("test").startActiveSpan("test root", async (span) => {
        try {
          return await client.call(aName, "Start.Go", { step });
        } finally {
          span.end();
        }
      });
      assert.deepEqual(answer, { published: topic });

      await waitUntil(() => spansOf(cProc).length >= 1 && spansOf(bProc).length >= 2, 20_000, "B's and C's spans");
      const local = exporter.getFinishedSpans();
      const rootSpan = local.find((s) => s.name === "test root")!;
      const traceId = rootSpan.spanContext().traceId;
      const clientSpan = local.find((s) => s.kind === SpanKind.CLIENT)!;
      assert.ok(clientSpan, "the client's span");
      assert.equal(clientSpan.parentSpanContext?.spanId, rootSpan.spanContext().spanId);
      assert.equal(clientSpan.name, `${aName}.Start.Go`);

      const one = (spans: SpanLine[], kind: SpanKind) => {
        const found = spans.filter((s) => s.kind === kind);
        assert.equal(found.length, 1, `one span of kind ${SpanKind[kind]} in ${JSON.stringify(spans.map((s) => s.name))}`);
        return found[0]!;
      };
      const aServer = one(spansOf(aProc), SpanKind.SERVER);
      const aPublish = one(spansOf(aProc), SpanKind.PRODUCER);
      const bConsume = one(spansOf(bProc), SpanKind.CONSUMER);
      const bCall = one(spansOf(bProc), SpanKind.CLIENT);
      const cServer = one(spansOf(cProc), SpanKind.SERVER);
      const chain = [aServer, aPublish, bConsume, bCall, cServer];
      for (const span of chain) assert.equal(span.traceId, traceId, `${span.name} is in the client's trace`);
      assert.equal(aServer.parentSpanId, clientSpan.spanContext().spanId);
      assert.equal(aPublish.parentSpanId, aServer.spanId);
      assert.equal(bConsume.parentSpanId, aPublish.spanId);
      assert.equal(bCall.parentSpanId, bConsume.spanId);
      assert.equal(cServer.parentSpanId, bCall.spanId);

      assert.equal(aServer.name, `${aName}.Start.Go`);
      assert.equal(aPublish.name, `Pub to ${topic}`);
      assert.equal(bConsume.name, `Sub from ${topic}`);
      assert.equal(cServer.name, `${cName}.Lookup.Find`);
      assert.equal(aServer.attributes["micro.endpoint"], "Start.Go");
      assert.equal(aServer.attributes["micro.service"], aName);
      assert.match(String(aServer.attributes["micro.node"]), new RegExp(`^${aName}-`));
      assert.equal(aPublish.attributes["micro.topic"], topic);
      assert.equal(aPublish.attributes["messaging.system"], c.broker);
      assert.equal(bConsume.attributes["micro.topic"], topic);
      assert.equal(bCall.attributes["micro.service"], cName);
      assert.equal(bCall.attributes["micro.endpoint"], "Lookup.Find");
      assert.match(String(bCall.attributes["micro.node"]), new RegExp(`^${cName}-`));
      assert.equal(cServer.attributes["micro.node"], bCall.attributes["micro.node"]);

      // C's log line made inside the call joins the trace.
      const logLine = cProc
        .stderr()
        .split("\n")
        .filter((l) => l.includes("lookup inside the trace"))
        .map((l) => JSON.parse(l) as { trace_id?: string; span_id?: string; step?: string });
      assert.deepEqual(logLine.map((l) => [l.step, l.trace_id, l.span_id]), [[step, traceId, cServer.spanId]]);
    });
  }
});

/** Every broker carries the trace context in the event's headers (in this process: publisher and subscriber are two services). */
const BROKERS: Array<{ uri: string; port?: number }> = [
  { uri: "memory" },
  { uri: "http" },
  { uri: "nats://127.0.0.1:4222", port: 4222 },
  { uri: "mqtt://127.0.0.1:1883", port: 1883 },
  { uri: "amqp://127.0.0.1:5672", port: 5672 },
  { uri: "redis://127.0.0.1:6379", port: 6379 },
  { uri: "kafka://127.0.0.1:9092", port: 9092 },
  { uri: "nsq://127.0.0.1:4150", port: 4150 },
  { uri: "googlepubsub://127.0.0.1:8085", port: 8085 },
];

describe("the delivered event's span is a child of the publish span on every broker", () => {
  for (const { uri, port } of BROKERS) {
    test(uri, async (t) => {
      if (port && !(await canConnect(port))) return skipOrFail(t, `nothing listens on 127.0.0.1:${port} for ${uri}`, true);
      const topic = unique("trace.broker").replace(/_/g, "-");
      const opts = { registry: "memory", broker: uri, handleSignals: false };
      const subscriber = new Service({ ...opts, name: unique("trace_sub") });
      const publisher = new Service({ ...opts, name: unique("trace_pub") });
      services.push(subscriber, publisher);
      const received: string[] = [];
      await subscriber.subscribe(topic, (msg: { n: number }) => void received.push(String(msg.n)));
      await subscriber.start();
      await publisher.start();
      exporter.reset();
      // Some brokers deliver only what is published after the subscription has settled: publish until one arrives.
      await trace.getTracer("test").startActiveSpan("publisher root", async (root) => {
        for (let n = 0; received.length === 0; n++) {
          if (n >= 60) throw new Error(`no event arrived through ${uri} after ${n} publishes`);
          await publisher.publish(topic, { n });
          await waitUntil(() => received.length > 0, 500, "a delivery").catch(() => {});
        }
        root.end();
      });
      const spans = exporter.getFinishedSpans();
      const traceId = spans.find((s) => s.name === "publisher root")!.spanContext().traceId;
      const consumed = spans.find((s) => s.kind === SpanKind.CONSUMER && s.name === `Sub from ${topic}`);
      assert.ok(consumed, `a consumer span among ${JSON.stringify(spans.map((s) => s.name))}`);
      assert.equal(consumed.spanContext().traceId, traceId);
      const producer = spans.find((s) => s.kind === SpanKind.PRODUCER && s.spanContext().spanId === consumed.parentSpanContext?.spanId);
      assert.ok(producer, "the consumer span's parent is one of the publish spans");
      assert.equal(producer.name, `Pub to ${topic}`);
    });
  }
});

test("a failed call's client and server spans carry its go-micro error code and an error status", async () => {
  const name = unique("trace_fail");
  const opts = { registry: "memory", broker: "memory", handleSignals: false };
  const server = new Service({ ...opts, name });
  server.handle("Students.Find", () => {
    throw notFound(name, "no student named nobody");
  });
  const caller = new Service({ ...opts, name: unique("trace_fail_caller") });
  services.push(server, caller);
  await server.start();
  exporter.reset();
  await assert.rejects(caller.call(name, "Students.Find", {}), { code: 404 });
  await waitUntil(() => exporter.getFinishedSpans().length >= 2, 10_000, "both spans");
  for (const kind of [SpanKind.CLIENT, SpanKind.SERVER]) {
    const span = exporter.getFinishedSpans().find((s) => s.kind === kind)!;
    assert.equal(span.name, `${name}.Students.Find`);
    assert.equal(span.attributes["micro.error_code"], 404, SpanKind[kind]);
    assert.deepEqual(span.status, { code: SpanStatusCode.ERROR, message: "no student named nobody" });
    assert.equal(span.events[0]?.name, "exception");
  }
});
