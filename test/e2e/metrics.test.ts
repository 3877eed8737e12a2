/**
 * Prometheus metrics at GET /metrics on a node's RPC port, read by parsing the exposition text
 * after real calls (over loopback sockets) and events: the contract's names and labels, counts
 * per endpoint and code, in-flight, per topic, registry and broker state, process metrics, the
 * off switch (option and flag) and a program's own prom-client Registry.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, test } from "node:test";
import { Registry as MetricsRegistry } from "prom-client";
import { Service, badRequest, type ServiceOptions } from "../../src/index.ts";
import { parseExposition, sampleValue, scrape, type Sample } from "../helpers/prometheus.ts";
import { waitUntil, within } from "../helpers/net.ts";

const unique = (what: string) => `${what}_${randomUUID().slice(0, 8)}`;
const services: Service[] = [];
after(async () => {
  for (const s of services) await s.stop();
});

async function started(opts: ServiceOptions, setUp: (s: Service) => void | Promise<void> = () => {}): Promise<{ service: Service; address: string }> {
  const service = new Service({ registry: "memory", broker: "memory", handleSignals: false, ...opts });
  services.push(service);
  await setUp(service);
  await service.start();
  return { service, address: (await service.describe()).nodes[0]!.address };
}

describe("metrics at GET /metrics", () => {
  test("calls, errors by code, latency, in-flight, events, registry and broker state, process metrics", async () => {
    const name = unique("metrics_server");
    const topic = unique("metrics.topic");
    let release!: () => void;
    let arrived!: () => void;
    const slowCallArrived = new Promise<void>((resolve) => (arrived = resolve));
    const deliveries = { ok: 0, failed: 0 };
    const server = await started({ name }, async (s) => {
      s.handle("Echo.Call", (req: { n: number }) => ({ n: req.n }));
      s.handle("Echo.Fail", () => {
        throw badRequest(name, "no");
      });
      s.handle("Echo.Slow", async () => {
        arrived();
        await new Promise<void>((resolve) => (release = resolve));
        return {};
      });
      await s.subscribe(topic, (msg: { fail: boolean }) => {
        if (msg.fail) {
          deliveries.failed++;
          throw new Error("handler refused");
        }
        deliveries.ok++;
      });
    });
    const callerName = unique("metrics_caller");
    const caller = await started({ name: callerName });

    for (let n = 0; n < 3; n++) assert.deepEqual(await caller.service.call(name, "Echo.Call", { n }), { n });
    for (let n = 0; n < 2; n++) await assert.rejects(caller.service.call(name, "Echo.Fail", {}), { code: 400 });
    const slow = caller.service.call(name, "Echo.Slow", {});
    await within(slowCallArrived, 10_000, "the slow call reaching its handler");

    // Two first scrapes at once see one registry: the same series, once each.
    const [first, second] = await Promise.all([scrape(server.address), scrape(server.address)]);
    assert.equal(sampleValue(first, "micro_server_requests_total", { endpoint: "Echo.Call", code: "200" }), 3);
    assert.equal(sampleValue(second, "micro_server_requests_total", { endpoint: "Echo.Call", code: "200" }), 3);
    let samples = await scrape(server.address);
    const serverLabels = (endpoint: string) => ({ service: name, endpoint, node_service: name, node_id: server.service.nodeId });
    assert.equal(sampleValue(samples, "micro_server_requests_in_flight", serverLabels("Echo.Slow")), 1);
    assert.equal(sampleValue(samples, "micro_server_requests_in_flight", serverLabels("Echo.Call")), 0);
    release();
    await slow;

    for (const fail of [false, true, false, false]) await caller.service.publish(topic, { fail });
    await waitUntil(() => deliveries.ok === 3 && deliveries.failed === 1, 10_000, "four deliveries");

    samples = await scrape(server.address);
    assert.equal(sampleValue(samples, "micro_server_requests_total", { ...serverLabels("Echo.Call"), code: "200" }), 3);
    assert.equal(sampleValue(samples, "micro_server_requests_total", { ...serverLabels("Echo.Fail"), code: "400" }), 2);
    assert.equal(sampleValue(samples, "micro_server_requests_total", { ...serverLabels("Echo.Fail"), code: "200" }), undefined);
    assert.equal(sampleValue(samples, "micro_server_requests_total", { ...serverLabels("Echo.Slow"), code: "200" }), 1);
    assert.equal(sampleValue(samples, "micro_server_requests_in_flight", serverLabels("Echo.Slow")), 0);
    assert.equal(sampleValue(samples, "micro_server_request_duration_seconds_count", serverLabels("Echo.Call")), 3);
    assert.equal(sampleValue(samples, "micro_server_request_duration_seconds_bucket", { ...serverLabels("Echo.Fail"), le: "+Inf" }), 2);
    assertMonotonicBuckets(samples, "micro_server_request_duration_seconds_bucket", serverLabels("Echo.Call"));
    // Delivered counts every event handed to the handler; the one it refused is also an error.
    assert.equal(sampleValue(samples, "micro_broker_delivered_total", { topic }), 4);
    assert.equal(sampleValue(samples, "micro_broker_delivery_errors_total", { topic }), 1);
    assert.equal(sampleValue(samples, "micro_broker_handler_duration_seconds_count", { topic }), 4);
    assert.equal(sampleValue(samples, "micro_registry_registrations_total", { node_id: server.service.nodeId }), 1);
    assert.equal(sampleValue(samples, "micro_registry_registration_errors_total"), 0);
    assert.equal(sampleValue(samples, "micro_registry_up"), 1);
    assert.equal(sampleValue(samples, "micro_broker_up"), 1);
    assert.ok((sampleValue(samples, "process_resident_memory_bytes") ?? 0) > 0, "prom-client's process metrics");
    assert.ok(samples.every((s) => s.labels.node_service === name && s.labels.node_id === server.service.nodeId), "every series names its node");

    const callerSamples = await scrape(caller.address);
    const clientLabels = (endpoint: string) => ({ service: name, endpoint, node_service: callerName });
    assert.equal(sampleValue(callerSamples, "micro_client_requests_total", { ...clientLabels("Echo.Call"), code: "200" }), 3);
    assert.equal(sampleValue(callerSamples, "micro_client_requests_total", { ...clientLabels("Echo.Fail"), code: "400" }), 2);
    assert.equal(sampleValue(callerSamples, "micro_client_request_duration_seconds_count", clientLabels("Echo.Call")), 3);
    assert.equal(sampleValue(callerSamples, "micro_broker_published_total", { topic }), 4);
    assert.equal(sampleValue(callerSamples, "micro_broker_publish_errors_total", { topic }), 0);
    assert.equal(sampleValue(callerSamples, "micro_server_requests_total", { service: name }), undefined, "a node counts only its own handlers");
  });

  test("a renewal that the registry refuses is counted and marks the registry down", async () => {
    const name = unique("metrics_renew");
    const { service, address } = await started({ name, registerTTL: "2s", registerInterval: "100ms" });
    const registry = await service.registry();
    const register = registry.register.bind(registry);
    let refuse = true;
    registry.register = async (...args) => {
      if (refuse) throw new Error("registry unavailable");
      return register(...args);
    };
    await waitUntil(async () => (sampleValue(await scrape(address), "micro_registry_registration_errors_total") ?? 0) >= 1, 10_000, "a failed renewal");
    assert.equal(sampleValue(await scrape(address), "micro_registry_up"), 0);
    refuse = false;
    await waitUntil(async () => sampleValue(await scrape(address), "micro_registry_up") === 1, 10_000, "a renewal that succeeds");
    assert.ok((sampleValue(await scrape(address), "micro_registry_registrations_total") ?? 0) >= 2);
  });

  test("metrics: false and --metrics=false leave /metrics unanswered (404) while /health answers", async () => {
    for (const opts of [{ metrics: false }, {}]) {
      const name = unique("metrics_off");
      const { address } = await started({ name, ...opts }, (s) => {
        if (!("metrics" in opts)) s.init(["--metrics=false"]);
        s.handle("Echo.Call", () => ({ ok: true }));
      });
      const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 404);
      assert.equal(((await res.json()) as { code: number }).code, 404);
      const health = await fetch(`http://${address}/health`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(health.status, 200);
    }
    assert.throws(() => new Service({ handleSignals: false }).init(["--metrics=maybe"]), /invalid value for --metrics: "maybe" is not true or false/);
  });

  test("a program's own prom-client Registry gets the metrics and keeps its own series and labels", async () => {
    const own = new MetricsRegistry();
    own.setDefaultLabels({ app: "mine" });
    const name = unique("metrics_own");
    const first = await started({ name, metricsRegistry: own }, (s) => void s.handle("Echo.Call", () => ({})));
    // A second node in the same process shares the registry (its metrics are found, not made twice).
    const second = await started({ name: unique("metrics_own_caller"), metricsRegistry: own });
    await second.service.call(name, "Echo.Call", {});
    const samples = parseExposition(await own.metrics());
    assert.equal(sampleValue(samples, "micro_server_requests_total", { service: name, endpoint: "Echo.Call", code: "200", app: "mine" }), 1);
    assert.equal(sampleValue(samples, "micro_client_requests_total", { service: name, endpoint: "Echo.Call", code: "200", app: "mine" }), 1);
    assert.equal(samples.find((s) => s.labels.node_id !== undefined), undefined, "the program's default labels are left alone");
    assert.equal(samples.find((s) => s.name.startsWith("process_")), undefined, "process metrics are the program's to collect");
    // The node's port serves the same registry.
    assert.equal(sampleValue(await scrape(first.address), "micro_server_requests_total", { service: name, endpoint: "Echo.Call", code: "200" }), 1);
  });
});

/** Histogram buckets never decrease as le grows, and +Inf equals the count. */
function assertMonotonicBuckets(samples: Sample[], name: string, labels: Record<string, string>): void {
  const buckets = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(buckets.length > 2);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, `${name} bucket ${buckets[i]!.labels.le}`);
}
