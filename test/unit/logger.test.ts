/**
 * Logs that join traces: a line made inside a span carries its trace_id/span_id; a service logs
 * through the logger it was given; the default logger reads MICRO_LOG_LEVEL when first used.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { Writable } from "node:stream";
import { test } from "node:test";
import { trace } from "@opentelemetry/api";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { Service, createLogger, type Logger } from "../../src/index.ts";
import { canConnect, skipOrFail, waitUntil } from "../helpers/net.ts";

new NodeTracerProvider().register();

function capture(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      out.push(chunk.toString());
      done();
    },
  });
  return { logger: createLogger({ level: "debug" }, stream), lines: () => out.join("").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test("a line logged inside a span carries its trace_id and span_id; one outside carries none", () => {
  const { logger, lines } = capture();
  logger.info({ address: "127.0.0.1:1" }, "before");
  logger.info("outside");
  const ids = trace.getTracer("test").startActiveSpan("work", (span) => {
    logger.info("inside");
    span.end();
    return span.spanContext();
  });
  const [, outside, inside] = lines();
  assert.equal(outside!.trace_id, undefined);
  assert.equal(outside!.address, undefined, "a line's fields do not leak into the next");
  assert.equal(inside!.trace_id, ids.traceId);
  assert.equal(inside!.span_id, ids.spanId);
});

test("a service logs through ServiceOptions.logger, and its handler's lines join the call's trace", async () => {
  const { logger, lines } = capture();
  const service = new Service({ name: "logger_test", registry: "memory", broker: "memory", handleSignals: false, logger });
  service.handle("Log.Line", () => {
    service.logger.info("in the handler");
    return {};
  });
  await service.start();
  try {
    await trace.getTracer("test").startActiveSpan("caller", async (span) => {
      await service.call("logger_test", "Log.Line", {});
      span.end();
    });
  } finally {
    await service.stop();
  }
  const all = lines();
  assert.ok(all.some((l) => l.msg === "Starting [service] logger_test"), "the service's own lines go to its logger");
  const inHandler = all.find((l) => l.msg === "in the handler")!;
  assert.match(String(inHandler.trace_id), /^[0-9a-f]{32}$/);
  assert.match(String(inHandler.span_id), /^[0-9a-f]{16}$/);
});

test("the broker a service creates logs through the service's logger", async (t) => {
  if (!(await canConnect(4222))) return skipOrFail(t, "NATS is not listening on 127.0.0.1:4222", true);
  const { logger, lines } = capture();
  const topic = `logger.test.${process.pid}.${Date.now()}`;
  const service = new Service({ name: "logger_broker_test", registry: "memory", broker: "nats://127.0.0.1:4222", handleSignals: false, logger });
  await service.subscribe(topic, () => {
    throw new Error("refused");
  });
  await service.start();
  try {
    await service.publish(topic, { n: 1 });
    await waitUntil(() => lines().some((l) => l.msg === "subscriber handler failed" && l.topic === topic), 10_000, "the broker's line in the service's logger");
  } finally {
    await service.stop();
  }
});

test("the default logger reads MICRO_LOG_LEVEL when first used, not when imported", () => {
  const script = `
    const { logger } = await import("./src/logger.ts");
    process.env.MICRO_LOG_LEVEL = "debug";
    logger.debug("seen at debug");
  `;
  const run = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000, env: { ...process.env, MICRO_LOG_LEVEL: "warn" } });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, /"msg":"seen at debug"/);
});

test("the default logger loads pino with its first line at an enabled level; a line made with no context manager registered does not load @opentelemetry/api", () => {
  const script = `
    import { createRequire } from "node:module";
    const cache = createRequire(import.meta.url).cache;
    const loaded = (pkg) => Object.keys(cache).some((file) => file.includes("/node_modules/" + pkg + "/"));
    const { logger } = await import("./src/logger.ts");
    logger.info("below the level");
    logger.level = "info";
    console.log(JSON.stringify({ level: logger.level, pino: loaded("pino") }));
    logger.info("at the level");
    console.log(JSON.stringify({ pino: loaded("pino"), otel: loaded("@opentelemetry/api") }));
  `;
  const run = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000, env: { ...process.env, MICRO_LOG_LEVEL: "warn" } });
  assert.equal(run.status, 0, run.stderr);
  const [before, after] = run.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(before, { level: "info", pino: false });
  assert.deepEqual(after, { pino: true, otel: false });
  assert.doesNotMatch(run.stderr, /below the level/);
  assert.match(run.stderr, /"level":30,.*"msg":"at the level"/);
});
