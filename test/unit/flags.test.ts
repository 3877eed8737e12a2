import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { FlagError, OptionError, Service, createBroker, fromArgv, fromEnv, parseDuration, parsePluginRef } from "../../src/index.ts";
import type { NatsBrokerOptions } from "../../src/broker/nats.ts";

const saved = { ...process.env };
afterEach(() => {
  for (const k of Object.keys(process.env)) if (k.startsWith("MICRO_") && !(k in saved)) delete process.env[k];
});

test("flag beats env beats code beats default", () => {
  process.env.MICRO_REGISTER_TTL = "20";
  process.env.MICRO_REGISTER_INTERVAL = "7";
  process.env.MICRO_BROKER = "memory";
  const s = new Service({ name: "precedence", registerTTL: 99, registerInterval: 98, version: "code" });
  s.init(["--register_ttl=10", "--registry", "memory"]);
  const o = s.options();
  assert.equal(o.registerTTL, 10_000); // flag over env and code; flags say seconds, options hold ms
  assert.equal(o.registerInterval, 7_000); // env over code
  assert.equal(o.version, "code"); // code over default
  assert.equal(o.broker, "memory");
  assert.equal(o.registry, "memory");
  assert.equal(new Service().init([]).options().registerTTL, 20_000);
  delete process.env.MICRO_REGISTER_TTL;
  assert.equal(new Service().init([]).options().registerTTL, 60_000); // default
});

test("durations in code: a number is milliseconds, a string carries its unit", () => {
  const o = new Service({ registerTTL: "10s", registerInterval: 5000, drainTimeout: "1m30s", clientRequestTimeout: "250ms" }).options();
  assert.deepEqual([o.registerTTL, o.registerInterval, o.drainTimeout, o.clientRequestTimeout], [10_000, 5000, 90_000, 250]);
  assert.throws(() => new Service({ readTimeout: "soon" }), /readTimeout: "soon" is not a duration/);
});

test("go-style flag spellings, metadata and positionals", () => {
  const { options, positionals } = fromArgv(["-register_ttl=5", "--server_metadata", "a=1,b=2", "--server_metadata=c=3", "davie", "--client_request_timeout=1m30s"]);
  assert.equal(options.registerTTL, 5);
  assert.deepEqual(options.metadata, { a: "1", b: "2", c: "3" });
  assert.deepEqual(positionals, ["davie"]);
  assert.equal(options.clientRequestTimeout, 90_000);
});

test("resilience flags: bare and valued breaker, bulkhead, rate limit, retry budget and backoff, latency selector", () => {
  const { options, positionals } = fromArgv(["--client_circuit_breaker", "davie", "--server_bulkhead=10,100", "--server_rate_limit=100", "--client_retry_budget=0.2", "--client_retry_backoff=jitter", "--selector=latency"]);
  assert.deepEqual(positionals, ["davie"], "a bare breaker flag takes no value");
  assert.equal(options.clientCircuitBreaker && options.clientCircuitBreaker.consecutiveFailures, 5);
  assert.deepEqual(options.serverBulkhead, { maxConcurrent: 10, maxQueued: 100 });
  assert.deepEqual(options.serverRateLimit, { rate: 100, burst: undefined });
  assert.deepEqual([options.clientRetryBudget, options.clientRetryBackoff, options.selector], [0.2, "jitter", "latency"]);
  const tuned = fromArgv(["--client_circuit_breaker=failures=3,ratio=0.25,window=8,half_open=500ms"]).options.clientCircuitBreaker;
  assert.deepEqual(tuned, { consecutiveFailures: 3, failureRatio: 0.25, window: 8, halfOpenAfter: 500 });
  assert.equal(fromArgv(["--client_circuit_breaker=false"]).options.clientCircuitBreaker, false);
  const perCallerLimit = fromArgv(["--server_rate_limit=10,20,caller"]).options.serverRateLimit;
  assert.deepEqual([perCallerLimit?.rate, perCallerLimit?.burst, perCallerLimit?.key?.({ service: "s", endpoint: "A.B", headers: { "Micro-From-Service": "web" }, signal: AbortSignal.abort() })], [10, 20, "A.B web"]);
  // The flag beats MICRO_CLIENT_CIRCUIT_BREAKER, and reaches the service's options.
  process.env.MICRO_CLIENT_CIRCUIT_BREAKER = "true";
  process.env.MICRO_SERVER_BULKHEAD = "2";
  const o = new Service().init(["--client_circuit_breaker=false"]).options();
  assert.equal(o.clientCircuitBreaker, false);
  assert.deepEqual(o.serverBulkhead, { maxConcurrent: 2, maxQueued: undefined });
});

test("bad values name the flag", () => {
  const bad: Array<[string[], RegExp]> = [
    [["--register_ttl=abc"], /--register_ttl/],
    [["--register_ttl=-1"], /--register_ttl/],
    [["--registry=nope"], /--registry: unknown registry "nope"/],
    [["--broker=kafkaa"], /--broker/],
    [["--server_address=localhost"], /--server_address/],
    [["--client_request_timeout=soon"], /--client_request_timeout/],
    [["--client_pool_size=0"], /--client_pool_size/],
    [["--client_dial_timeout=0s"], /--client_dial_timeout: "0s" must be positive/],
    [["--client_max_in_flight=0"], /--client_max_in_flight/],
    [["--server_header_timeout=soon"], /--server_header_timeout/],
    [["--selector=fastest"], /--selector/],
    [["--client_circuit_breaker=ratio=2"], /--client_circuit_breaker/],
    [["--server_bulkhead=0"], /--server_bulkhead/],
    [["--server_rate_limit=10,0"], /--server_rate_limit/],
    [["--client_retry_budget=1.5"], /--client_retry_budget/],
    [["--client_retry_backoff=linear"], /--client_retry_backoff/],
    [["--nope=1"], /unknown flag --nope/],
    [["--registry"], /--registry needs a value/],
  ];
  for (const [argv, re] of bad) assert.throws(() => fromArgv(argv), (e: Error) => e instanceof FlagError && re.test(e.message), argv.join(" "));
});

test("dial timeout, in-flight cap and header timeout come from flags, env or code, and reach the client", async () => {
  process.env.MICRO_CLIENT_MAX_IN_FLIGHT = "1";
  const s = new Service({ name: "edges", registry: "memory", broker: "memory", headerTimeout: "2s", clientDialTimeout: 900, clientRetries: 0, handleSignals: false });
  s.init(["--client_dial_timeout=250ms"]);
  const o = s.options();
  assert.deepEqual([o.clientDialTimeout, o.clientMaxInFlight, o.headerTimeout], [250, 1, 2000]);
  assert.equal(fromEnv({ MICRO_SERVER_HEADER_TIMEOUT: "3" }).headerTimeout, 3000, "a bare number is seconds, as go-micro's flags");
  s.handle("Slow.Call", () => new Promise((resolve) => setTimeout(() => resolve({ ok: true }), 200)));
  await s.start();
  try {
    // One call in flight is the cap: a second one on the same connection fails at once with a 503.
    const settled = await Promise.allSettled([s.call("edges", "Slow.Call", {}), s.call("edges", "Slow.Call", {})]);
    const answered = settled.filter((r) => r.status === "fulfilled").map((r) => r.value);
    const refused = settled.filter((r) => r.status === "rejected").map((r) => (r.reason as { code: number }).code);
    assert.deepEqual([answered, refused], [[{ ok: true }], [503]], JSON.stringify(settled));
  } finally {
    await s.stop();
  }
});

test("registration times that would let a running node drop out of the registry are refused in code with a typed error", () => {
  const refused: Array<[object, string]> = [
    [{ registerTTL: 0 }, "registerTTL"],
    [{ registerInterval: 0 }, "registerInterval"],
    [{ registerTTL: "5s", registerInterval: "10s" }, "registerInterval"],
    [{ registerTTL: "10s" }, "registerInterval"], // the default interval (30 s) is not shorter
    [{ registerTTL: -5000 }, "registerTTL"],
    [{ registerTTL: Number.NaN }, "registerTTL"],
    [{ registerTTL: Infinity }, "registerTTL"],
    [{ registerInterval: Number.NaN }, "registerInterval"],
    [{ registerTTL: "1000h", registerInterval: "600h" }, "registerInterval"], // past Node's timer limit: it would fire at once, in a loop
  ];
  for (const [options, option] of refused) {
    assert.throws(() => new Service(options), (e: Error) => e instanceof OptionError && e.option === option, JSON.stringify(options));
  }
  assert.equal(new Service({ registerTTL: "10s", registerInterval: "5s" }).options().registerInterval, 5000);
  // Flags are checked against what the code set: the interval from the code is longer than the flag's TTL.
  assert.throws(() => new Service({ registerInterval: "20s" }).init(["--register_ttl=15"]), /invalid --register_ttl=15: the register interval must be shorter than the TTL.*registerInterval 20000 ms/);
  assert.throws(
    () => new Service().init(["--register_interval=3000000", "--register_ttl=4000000"]),
    (e: Error) => e instanceof FlagError && /^invalid --register_interval=3000000: the register interval must be at most 2147483647 ms/.test(e.message) && !e.message.includes("\n"),
  );
  assert.equal(new Service().init(["--register_interval=2000000", "--register_ttl=4000000"]).options().registerInterval, 2_000_000_000);
});

test("durations and plugin URIs", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("2"), 2000);
  assert.equal(parseDuration("1h1s"), 3_601_000);
  assert.throws(() => parseDuration("5 s"));
  assert.deepEqual(parsePluginRef("etcd://127.0.0.1:2379,127.0.0.1:22379"), {
    name: "etcd",
    addresses: ["127.0.0.1:2379", "127.0.0.1:22379"],
    url: "etcd://127.0.0.1:2379,127.0.0.1:22379",
  });
  assert.equal(parsePluginRef("amqp://guest:guest@127.0.0.1:5672/").name, "rabbitmq");
  assert.deepEqual(parsePluginRef("amqp://guest:guest@127.0.0.1:5672/").addresses, ["127.0.0.1:5672"]);
  assert.deepEqual(parsePluginRef("MDNS"), { name: "mdns" });
});

test("a plugin URI's query sets the plugin's options, so a flag can choose a durable mode", async () => {
  assert.deepEqual(parsePluginRef("mqtt://127.0.0.1:1883?durable=true&client_id=message-1&session_expiry=600&qos=1"), {
    name: "mqtt",
    addresses: ["127.0.0.1:1883"],
    url: "mqtt://127.0.0.1:1883",
    options: { durable: true, clientId: "message-1", sessionExpiry: 600, qos: 1 },
  });
  const broker = await createBroker<NatsBrokerOptions>("nats://127.0.0.1:4222?jetstream=true", { reconnectWait: 5 });
  const options = broker.options() as NatsBrokerOptions;
  assert.equal(options.jetstream, true);
  assert.equal(options.reconnectWait, 5, "options from code are kept");
  assert.equal(broker.address(), "127.0.0.1:4222", "the query is not part of the address");
});
