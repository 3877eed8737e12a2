/** The dashboard's reading of /metrics: the exposition parser, the rates, error ratios and quantiles built on it, and the scraper. */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import { parseExposition } from "../../src/cli/fleet/exposition.ts";
import { Fleet } from "../../src/cli/fleet/fleet.ts";
import type { FleetSnapshot } from "../../src/cli/fleet/snapshot.ts";
import { endpointRates, nodeWindow, quantile, topicRates } from "../../src/cli/fleet/stats.ts";
import type { Service } from "../../src/registry/registry.ts";
import { within } from "../helpers/net.ts";

const node = `node_service="student_service",node_id="student_service-1"`;

/** One node's /metrics as prom-client writes it, with the counts given. */
function metrics(ok: number, notFound: number, buckets: [string, number][], published: number): string {
  return [
    "# HELP micro_server_requests_total Requests handled, by endpoint and code.",
    "# TYPE micro_server_requests_total counter",
    `micro_server_requests_total{service="student_service",endpoint="StudentManager.GetStudent",code="200",${node}} ${ok}`,
    `micro_server_requests_total{service="student_service",endpoint="StudentManager.GetStudent",code="404",${node}} ${notFound}`,
    "# TYPE micro_server_request_duration_seconds histogram",
    ...buckets.map(([le, n]) => `micro_server_request_duration_seconds_bucket{le="${le}",service="student_service",endpoint="StudentManager.GetStudent",${node}} ${n}`),
    `micro_server_request_duration_seconds_sum{service="student_service",endpoint="StudentManager.GetStudent",${node}} 0.5`,
    `micro_server_requests_in_flight{service="student_service",endpoint="StudentManager.GetStudent",${node}} 2`,
    `micro_broker_published_total{topic="go.micro.srv.message",${node}} ${published}`,
    `process_cpu_user_seconds_total{${node}} 0.12 1700000000000`,
    "",
  ].join("\n");
}

describe("exposition text", () => {
  test("names, labels with escapes, special values and timestamps", () => {
    const samples = parseExposition(
      [
        "# TYPE a counter",
        'a{path="C:\\\\x",quote="say \\"hi\\"",nl="1\\n2"} 3',
        "b +Inf",
        "c{} -Inf 1700000000000",
        'd{x="}, {"} NaN',
        "e_total 1.5e3",
      ].join("\n"),
    );
    assert.deepEqual(samples[0], { name: "a", labels: { path: "C:\\x", quote: 'say "hi"', nl: "1\n2" }, value: 3 });
    assert.equal(samples[1]!.value, Infinity);
    assert.deepEqual(samples[2], { name: "c", labels: {}, value: -Infinity });
    assert.deepEqual(samples[3]!.labels, { x: "}, {" });
    assert.ok(Number.isNaN(samples[3]!.value));
    assert.equal(samples[4]!.value, 1500);
  });

  test("a malformed line is an error naming the line", () => {
    assert.throws(() => parseExposition('ok 1\nbad{x="1} 2'), /metrics line 2: label x is not closed/);
    assert.throws(() => parseExposition("x abc"), /metrics line 1: bad value abc/);
  });
});

describe("rates from two scrapes", () => {
  const before = { at: 0, samples: parseExposition(metrics(100, 0, [["0.005", 50], ["0.01", 90], ["0.1", 100], ["+Inf", 100]], 7)) };
  // 10 s later: 40 more successes, 10 failures; of the 50 new observations 20 took ≤5 ms, 20 ≤10 ms, 10 ≤100 ms.
  const after = { at: 10_000, samples: parseExposition(metrics(140, 10, [["0.005", 70], ["0.01", 130], ["0.1", 150], ["+Inf", 150]], 27)) };

  test("an endpoint's request rate, error rate and latency quantiles", () => {
    const [rates, ...rest] = endpointRates([nodeWindow(before, after)]);
    assert.equal(rest.length, 0);
    assert.equal(rates!.service, "student_service");
    assert.equal(rates!.endpoint, "StudentManager.GetStudent");
    assert.equal(rates!.rate, 5);
    assert.equal(rates!.errorRate, 1);
    assert.equal(rates!.errorRatio, 0.2);
    // rank 25 of 50 falls in the (5 ms, 10 ms] bucket, 5 of its 20 in: 5 + 5·5/20 ms.
    assert.ok(Math.abs(rates!.p50! - 0.00625) < 1e-9, String(rates!.p50));
    assert.ok(Math.abs(rates!.p99! - (0.01 + (0.09 * 9.5) / 10)) < 1e-9, String(rates!.p99));
    assert.equal(rates!.inFlight, 2);
  });

  test("two nodes add up; a restarted node counts from zero", () => {
    const restarted = { at: 10_000, samples: parseExposition(metrics(5, 5, [["0.005", 10], ["0.01", 10], ["0.1", 10], ["+Inf", 10]], 0)) };
    const [rates] = endpointRates([nodeWindow(before, after), nodeWindow(before, restarted)]);
    assert.equal(rates!.rate, 5 + 1);
    assert.equal(rates!.errorRatio, 15 / 60);
  });

  test("no requests in the window: rate 0, no quantiles", () => {
    const [rates] = endpointRates([nodeWindow(after, { ...after, at: 12_000 })]);
    assert.deepEqual([rates!.rate, rates!.errorRatio, rates!.p50, rates!.p99], [0, 0, null, null]);
  });

  test("a topic's event rate and its publishers", () => {
    assert.deepEqual(topicRates([nodeWindow(before, after)]), [
      { topic: "go.micro.srv.message", published: 2, delivered: 0, failed: 0, publishers: ["student_service"], receivers: [] },
    ]);
  });

  test("quantiles: +Inf bucket and empty histograms", () => {
    assert.equal(quantile(0.99, [{ le: 0.1, count: 1 }, { le: Infinity, count: 100 }]), 0.1);
    assert.equal(quantile(0.5, [{ le: 1, count: 0 }, { le: Infinity, count: 0 }]), null);
  });
});

describe("the fleet scraper", () => {
  test("reads each node's /health and /metrics, and merges topics from the registry and the metrics", async (t) => {
    // A tsmicro node whose counters grow by 10 requests (2 failing) and 4 events per scrape, and a go-micro node without either path.
    let scrapes = 0;
    const tsmicroNode = http.createServer((req, res) => {
      if (req.url === "/health") return void res.end('{"status":"ok"}');
      scrapes++;
      const published = `micro_broker_published_total{topic="go.micro.srv.message",${node}} ${4 * scrapes}`;
      res.end(`${metrics(8 * scrapes, 2 * scrapes, [["0.005", 10 * scrapes], ["+Inf", 10 * scrapes]], 0)}${published}\n`);
    });
    const goMicroNode = http.createServer((req, res) => {
      res.writeHead(req.url === "/metrics" ? 405 : 404).end();
    });
    const listen = async (server: http.Server) => {
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      t.after(() => server.close());
      return `127.0.0.1:${(server.address() as AddressInfo).port}`;
    };
    const services: Service[] = [
      {
        name: "student_service",
        version: "v1",
        endpoints: [],
        nodes: [{ id: "student_service-1", address: await listen(tsmicroNode), metadata: {} }],
      },
      {
        name: "go.micro.srv",
        version: "latest",
        endpoints: [
          { name: "Func", request: { name: "Student", type: "student.Student", values: [] }, response: null, metadata: { topic: "go.micro.srv.message", subscriber: "true" } },
        ],
        nodes: [{ id: "go.micro.srv-1", address: await listen(goMicroNode), metadata: {} }],
      },
      // The http broker's subscription: a registry node with the topic, not a service to scrape.
      { name: "micro.http.broker", version: "broadcast", nodes: [{ id: "go.micro.srv.message-go.micro.http.broker-1", address: "127.0.0.1:1", metadata: { broker: "http", topic: "go.micro.srv.message" } }] },
    ];
    const fleet = new Fleet({ snapshot: () => services }, 50);
    const rounds: FleetSnapshot[] = [];
    const third = new Promise<FleetSnapshot>((resolve) => fleet.onSnapshot((s) => rounds.push(s) === 3 && resolve(s)));
    fleet.start();
    t.after(() => fleet.stop());
    const snapshot = await within(third, 10_000, "three scrapes");

    const [endpoint, ...others] = snapshot.endpoints;
    assert.equal(others.length, 0);
    assert.equal(endpoint!.endpoint, "StudentManager.GetStudent");
    assert.ok(endpoint!.rate > 0 && endpoint!.errorRatio === 0.2, JSON.stringify(endpoint));
    assert.equal(endpoint!.history.length, 2, "one point per round with two scrapes or more");
    assert.deepEqual(
      snapshot.topics.map(({ topic, publishers, subscribers, brokerSubscriptions, messageTypes }) => ({ topic, publishers, subscribers, brokerSubscriptions, messageTypes })),
      [{ topic: "go.micro.srv.message", publishers: ["student_service"], subscribers: ["go.micro.srv"], brokerSubscriptions: 1, messageTypes: ["student.Student"] }],
    );
    assert.ok(snapshot.topics[0]!.published > 0);
    const byId = new Map(snapshot.nodes.map((n) => [n.id, n]));
    assert.deepEqual(byId.get("student_service-1")!.health.map((h) => h.status), ["ok", "ok", "ok"]);
    assert.equal(byId.get("student_service-1")!.metrics, "ok");
    assert.deepEqual(byId.get("go.micro.srv-1")!.health.map((h) => h.status), ["unknown", "unknown", "unknown"]);
    assert.equal(byId.get("go.micro.srv-1")!.metrics, "absent");
    assert.equal(byId.size, 2, "the http broker's subscription is not scraped");
  });
});
