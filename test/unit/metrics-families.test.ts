/** The call-path-cheap metric families render as prom-client renders its own: bucket edges, +Inf, sums, default labels, reset. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Registry } from "prom-client";
import { Family } from "../../src/observability/families.ts";
import { parseExposition, sampleValue } from "../helpers/prometheus.ts";

test("a histogram counts a value equal to a bound in that bucket, cumulatively, with +Inf, sum and count", async () => {
  const registry = new Registry();
  registry.setDefaultLabels({ node_id: "n1" });
  const latency = Family.in(registry, "histogram", "t_seconds", "help", [0.1, 1]).labels({ endpoint: "E.P" });
  for (const v of [0.05, 0.1, 0.5, 1, 3]) latency.observe(v);
  const samples = parseExposition(await registry.metrics());
  const bucket = (le: string) => sampleValue(samples, "t_seconds_bucket", { endpoint: "E.P", le, node_id: "n1" });
  assert.deepEqual([bucket("0.1"), bucket("1"), bucket("+Inf")], [2, 4, 5]);
  assert.equal(sampleValue(samples, "t_seconds_count", { endpoint: "E.P" }), 5);
  assert.ok(Math.abs(sampleValue(samples, "t_seconds_sum", { endpoint: "E.P" })! - 4.65) < 1e-9);
  assert.match(await registry.metrics(), /^# TYPE t_seconds histogram$/m);
});

test("one family per name and registry: a second lookup shares its series; resetMetrics() zeroes them", async () => {
  const registry = new Registry();
  const first = Family.in(registry, "counter", "c_total", "help").labels({ code: "200" });
  const second = Family.in(registry, "counter", "c_total", "help").labels({ code: "200" });
  assert.equal(first, second);
  first.inc();
  second.inc();
  assert.equal(sampleValue(parseExposition(await registry.metrics()), "c_total", { code: "200" }), 2);
  registry.resetMetrics();
  assert.equal(sampleValue(parseExposition(await registry.metrics()), "c_total", { code: "200" }), 0);
  assert.throws(() => Family.in(registry, "gauge", "c_total", "help"), /already been registered/);
});
