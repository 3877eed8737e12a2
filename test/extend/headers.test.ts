/** One header case rule on every transport: handlers see the same canonical keys, and a Micro-Id, over tcp and http. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { Client, Service, getHeader, type HandlerWrapper } from "../../src/index.ts";

test("tcp and http hand handlers and wrappers the same canonical keys and a Micro-Id", async (t) => {
  const name = `headers_${randomUUID().slice(0, 8)}`;
  const seenByWrapper: string[][] = [];
  const record: HandlerWrapper = (next) => async (req, ctx) => {
    seenByWrapper.push(Object.keys(ctx.headers).sort());
    return next(req, ctx);
  };
  const service = new Service({ name, registry: "memory", broker: "memory", handleSignals: false, wrapHandler: [record] });
  service.handle("Echo.Headers", (_req: unknown, ctx) => ({ headers: ctx.headers }));
  await service.start();
  t.after(() => service.stop());
  const sent = { "x-lower": "a", "X-UPPER-CASE": "b", "x-Mixed_case": "c" };
  const seen: Record<string, Record<string, string>> = {};
  for (const transport of ["tcp", "http"] as const) {
    const client = new Client({ registry: await service.registry(), transport });
    t.after(() => client.close());
    seen[transport] = ((await client.call(name, "Echo.Headers", {}, { headers: sent })) as { headers: Record<string, string> }).headers;
  }
  const user = (h: Record<string, string>) => Object.fromEntries(Object.entries(h).filter(([k]) => k.startsWith("X-")));
  assert.deepEqual(user(seen.tcp!), { "X-Lower": "a", "X-Upper-Case": "b", "X-Mixed_case": "c" });
  assert.deepEqual(user(seen.http!), user(seen.tcp!));
  for (const transport of ["tcp", "http"]) {
    const headers = seen[transport]!;
    assert.match(headers["Micro-Id"] ?? "", /^[0-9a-f-]{36}$/, `${transport}: ${JSON.stringify(headers)}`);
    assert.equal(headers["Micro-Endpoint"], "Echo.Headers");
    assert.equal(getHeader(headers, "micro-service"), name);
    assert.equal(getHeader(headers, "CONTENT-TYPE"), "application/json");
  }
  assert.notEqual(seen.tcp!["Micro-Id"], seen.http!["Micro-Id"]);
  // The wrappers saw the same keys as the handler on both transports (each with its own hop headers only on http).
  assert.equal(seenByWrapper.length, 2);
  for (const keys of seenByWrapper) for (const k of keys) assert.equal(k, k.replace(/(^|-)([a-z])/g, (_, d: string, c: string) => d + c.toUpperCase()), `canonical: ${k}`);
});
