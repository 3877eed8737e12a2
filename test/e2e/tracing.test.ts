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
import { SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { Service } from "../../src/index.ts";
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
