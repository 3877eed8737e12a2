/**
 * A go-micro service in the middle of a trace: a tsmicro client (OpenTelemetry SDK registered, its
 * in-memory exporter) calls a go-micro v4/v5 student_service that relays the request, with its
 * incoming context, to a tsmicro student_service — as a go-micro handler calling another service
 * does. go-micro passes the caller's metadata on, traceparent among it, so the tsmicro server's span
 * continues the client's trace as the client span's child. All on etcd, over go-micro's HTTP transport.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe } from "node:test";
import { SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { Service } from "../../src/index.ts";
import { StudentManager } from "../../examples/student/gen/student_pb.ts";
import { waitUntil } from "../helpers/net.ts";
import { ETCD_FOR_GO, GO_MICRO_VERSIONS, cell, startPeer } from "./peers.ts";

const exporter = new InMemorySpanExporter();
new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).register();

const ETCD = "etcd://127.0.0.1:2379";
const DAVIE = { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" };
const unique = (what: string) => `interop_${what}_${randomUUID().slice(0, 8)}`;

describe("W3C trace context through a go-micro service", () => {
  for (const version of GO_MICRO_VERSIONS) {
    cell("trace context (etcd)", version, "tsmicro client → go relay → tsmicro server", async () => {
      const [relayName, targetName] = [unique("relay"), unique("traced")];
      const options = { registry: ETCD, broker: "memory", registerTTL: 10_000, registerInterval: 5_000, handleSignals: false };
      const target = new Service({ ...options, name: targetName });
      target.handle(StudentManager, { getStudent: () => DAVIE });
      const caller = new Service({ ...options, name: unique("caller") });
      await target.start();
      const peer = startPeer(version, { ...ETCD_FOR_GO, PEER_MODE: "server", PEER_SERVICE: relayName, PEER_RELAY_TO: targetName });
      try {
        await peer.next((l) => "ready" in l, 20_000, "ready line");
        exporter.reset();
        // The relay may not be in etcd for the caller's first lookup yet: retry within the caller's span.
        const answer = await trace.getTracer("test").startActiveSpan("interop root", async (root) => {
          try {
            for (let attempt = 0; ; attempt++) {
              try {
                return await caller.call(relayName, "StudentManager.GetStudent", { name: "davie" });
              } catch (err) {
                if (attempt >= 20) throw err;
                await new Promise((r) => setTimeout(r, 250));
              }
            }
          } finally {
            root.end();
          }
        });
        assert.deepEqual(answer, DAVIE);
        await waitUntil(() => exporter.getFinishedSpans().some((s) => s.kind === SpanKind.SERVER), 10_000, "the tsmicro server's span");
        const spans = exporter.getFinishedSpans();
        const traceId = spans.find((s) => s.name === "interop root")!.spanContext().traceId;
        const answered = spans.filter((s) => s.kind === SpanKind.CLIENT && s.status.code !== 2 && s.name === `${relayName}.StudentManager.GetStudent`);
        assert.equal(answered.length, 1, "one client attempt answered");
        const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
        assert.equal(server.name, `${targetName}.StudentManager.GetStudent`);
        assert.equal(server.spanContext().traceId, traceId, "the tsmicro server continues the client's trace");
        assert.equal(server.parentSpanContext?.spanId, answered[0]!.spanContext().spanId, "its parent is the client's span (the go-micro relay makes none)");
      } finally {
        await peer.stop("SIGKILL");
        await caller.stop();
        await target.stop();
      }
    });
  }
});
