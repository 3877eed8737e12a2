/**
 * The resilience policies against real processes on loopback (mdns registry): the latency
 * selector keeps calls off a slow node, a failing node's breaker opens and closes again, a
 * saturated endpoint sheds load with 503 (retried on another node) and recovers, a rate limit
 * answers 429, and a service that is down gets retries bounded by the budget.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Client, MicroError, Service, createRegistry, type BreakerStateChange, type CallWrapper, type ClientOptions, type Registry } from "../../src/index.ts";
import { startTs, waitUntil, within, type Proc } from "../helpers/net.ts";

const fixture = fileURLToPath(new URL("./fixtures/resilient-node.ts", import.meta.url));
const quiet = { ...process.env, MICRO_LOG_LEVEL: "error" };
const uniqueName = (what: string) => `${what}_${randomUUID().slice(0, 8)}`;

interface Started {
  proc: Proc;
  /** The node id without its service prefix: what Node.Work answers. */
  uuid: string;
  id: string;
  address: string;
}

const procs: Proc[] = [];
const registries: Registry[] = [];
const clients: Client[] = [];
after(async () => {
  for (const p of procs) p.signal("SIGKILL");
  for (const c of clients) await c.close();
  for (const r of registries) await r.close();
});

async function startNode(name: string, args: string[] = []): Promise<Started> {
  const proc = startTs(fixture, [`--server_name=${name}`, ...args], { env: quiet });
  procs.push(proc);
  const [, id, address] = (await proc.waitForLine(/^ready /, 20_000)).split(" ");
  return { proc, id: id!, uuid: id!.slice(name.length + 1), address: address! };
}

let registry: Registry | undefined;
async function client(opts: Partial<ClientOptions> = {}): Promise<Client> {
  if (!registry) registries.push((registry = await createRegistry("mdns")));
  const c = new Client({ registry, ...opts });
  clients.push(c);
  return c;
}

async function nodesRegistered(name: string, count: number): Promise<void> {
  const r = registry ?? (await client(), registry!);
  // Each look is an mdns question every process on loopback hears: a few a second, not fifty.
  await waitUntil(async () => (await r.getService(name).catch(() => []))[0]?.nodes.length === count, 15_000, `${count} nodes of ${name} registered`, 250);
}

let control: Promise<Client> | undefined;
/** Calls a node by its address (no selection, no retry, time enough to be held): how the tests steer and read the nodes. */
const at = async <T = unknown>(node: Started, endpoint: string, body: object = {}) =>
  (await (control ??= client({ retries: 0, requestTimeout: 30_000 }))).call<T>("resilient_service", endpoint, body, { address: node.address });

const failure = (p: Promise<unknown>) =>
  p.then(
    () => assert.fail("the call should have failed"),
    (e: unknown) => e as MicroError,
  );

test("the latency selector keeps calls off a slow node; random does not", async (t) => {
  const name = uniqueName("latency");
  const [fast, slow] = await Promise.all([startNode(name), startNode(name)]);
  await at(slow, "Node.Set", { delayMs: 300 });
  const latency = await client({ selector: "latency" });
  const random = await client({ selector: "random" });
  await nodesRegistered(name, 2);

  const share = async (c: Client, calls: number) => {
    const served = new Map<string, number>();
    let left = calls;
    const worker = async () => {
      while (left-- > 0) {
        const { node } = await c.call<{ node: string }>(name, "Node.Work", {});
        served.set(node, (served.get(node) ?? 0) + 1);
      }
    };
    await within(Promise.all(Array.from({ length: 4 }, worker)), 60_000, "the calls");
    return (served.get(slow.uuid) ?? 0) / calls;
  };
  const latencyShare = await share(latency, 300);
  const randomShare = await share(random, 40);
  t.diagnostic(`slow node's share: latency ${(latencyShare * 100).toFixed(1)}%, random ${(randomShare * 100).toFixed(1)}%`);
  assert.ok(latencyShare < 0.15, `latency selector sent ${(latencyShare * 100).toFixed(1)}% of calls to the slow node`);
  assert.ok(randomShare > 0.2, `random sent ${(randomShare * 100).toFixed(1)}% to the slow node (so the slow node was callable)`);
  assert.ok(fast.uuid !== slow.uuid);
});

test("a failing node's breaker opens, keeps calls off it, and closes once it serves again", async () => {
  const name = uniqueName("breaker");
  const [good, bad] = await Promise.all([startNode(name), startNode(name)]);
  const changes: BreakerStateChange[] = [];
  const waiters: Array<() => void> = [];
  const c = await client({
    retries: 0,
    circuitBreaker: { consecutiveFailures: 3, halfOpenAfter: 3000, onStateChange: (ch) => (changes.push(ch), waiters.splice(0).forEach((w) => w())) },
  });
  await nodesRegistered(name, 2);
  await at(bad, "Node.Set", { failing: true });
  /** Calls the service over and over until bad's breaker reports `state`: calls are what move a breaker. */
  const callUntil = async (state: string) => {
    let seen = false;
    const reached = () => changes.some((ch) => ch.node === bad.id && ch.state === state);
    const event = new Promise<void>((resolve) => {
      const check = () => (reached() ? resolve() : waiters.push(check));
      check();
    }).then(() => (seen = true));
    const load = (async () => {
      while (!seen) {
        await c.call(name, "Node.Work", {}).catch(() => {});
        await new Promise((r) => setImmediate(r));
      }
    })();
    await within(event, 15_000, `bad node's breaker ${state}`);
    await load;
  };

  await callUntil("open");
  assert.deepEqual(
    changes.map((ch) => [ch.service, ch.node, ch.state]),
    [[name, bad.id, "open"]],
  );
  const before = await at<{ work: number }>(bad, "Node.Stats");
  for (let i = 0; i < 30; i++) assert.equal((await c.call<{ node: string }>(name, "Node.Work", {})).node, good.uuid, "an open breaker keeps calls off the node");
  assert.equal((await at<{ work: number }>(bad, "Node.Stats")).work, before.work, "no call reached the failing node");

  await at(bad, "Node.Set", { failing: false });
  await callUntil("closed");
  assert.deepEqual(
    changes.filter((ch) => ch.node === bad.id).map((ch) => ch.state),
    ["open", "half-open", "closed"],
  );
  const served = new Set<string>();
  for (let i = 0; i < 40; i++) served.add((await c.call<{ node: string }>(name, "Node.Work", {})).node);
  assert.ok(served.has(bad.uuid), "the recovered node serves again");
});

test("a saturated endpoint sheds load with a 503 that clients retry on another node, and recovers", async () => {
  const name = uniqueName("bulkhead");
  const [full, spare] = await Promise.all([startNode(name, ["--server_bulkhead=2,1"]), startNode(name)]);
  await nodesRegistered(name, 2);
  await at(full, "Node.Set", { hold: true });
  const held = [1, 2, 3].map(() => at<{ node: string }>(full, "Node.Work")); // 2 run, 1 waits
  await waitUntil(async () => (await at<{ running: number }>(full, "Node.Stats")).running === 2, 10_000, "two calls running on the full node");

  const shed = await failure(at(full, "Node.Work"));
  assert.equal(shed.code, 503);
  assert.equal(shed.id, name);
  assert.match(shed.detail, /Node\.Work is at capacity: 2 calls running and 1 queued/);

  // Through the registry, a call that lands on the full node is retried on the other one.
  const refusals: string[] = [];
  const seeRefusals: CallWrapper = (next) => (call) =>
    next(call).catch((err: MicroError) => {
      if (err.code === 503) refusals.push(call.node.id);
      throw err;
    });
  const c = await client({ retries: 1, wrapCall: [seeRefusals] });
  for (let i = 0; i < 16; i++) assert.equal((await c.call<{ node: string }>(name, "Node.Work", {})).node, spare.uuid);
  assert.ok(refusals.length > 0 && refusals.every((id) => id === full.id), `503s seen from ${JSON.stringify(refusals)}`);

  await at(full, "Node.Release");
  for (const call of await within(Promise.all(held), 10_000, "the held calls")) assert.equal(call.node, full.uuid);
  assert.equal((await at<{ node: string }>(full, "Node.Work")).node, full.uuid, "the endpoint serves again");
});

test("a rate-limited endpoint answers 429 beyond its rate and serves again once tokens refill", async () => {
  const node = await startNode(uniqueName("limited"), ["--server_rate_limit=5"]);
  const started = performance.now();
  const results = await Promise.allSettled(Array.from({ length: 20 }, () => at(node, "Node.Work")));
  const refilled = Math.ceil(((performance.now() - started) / 1000) * 5); // tokens that can have come back meanwhile (a busy machine spreads the burst)
  const ok = results.filter((r) => r.status === "fulfilled").length;
  const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason as MicroError] : []));
  assert.ok(ok >= 5 && ok <= 5 + refilled, `${ok} of 20 calls passed a 5/s limit with a burst of 5 (${refilled} tokens could refill)`);
  assert.ok(refused.every((e) => e.code === 429 && e.status === "Too Many Requests" && /more than 5 calls per second/.test(e.detail)), JSON.stringify(refused[0]));
  assert.equal(refused.length, 20 - ok);
  // Another endpoint has its own bucket.
  assert.deepEqual(await at(node, "Node.Stats"), { work: ok, down: 0, running: 0 });
  await waitUntil(() => at(node, "Node.Work").then(() => true, () => false), 3000, "a token refilled");
});

test("a per-caller rate limit keeps one calling service's burst from using up another's calls", async () => {
  const node = await startNode(uniqueName("percaller"), ["--server_rate_limit=1,2,caller"]);
  // Two calling services: a service's client names itself in Micro-From-Service, as go-micro's does.
  const [a, b] = ["caller_a", "caller_b"].map((name) => new Service({ name, registry: "memory", clientRetries: 0 }));
  try {
    const call = (from: Service) => from.call("resilient_service", "Node.Work", {}, { address: node.address }).then(() => 200, (e: MicroError) => e.code);
    const started = performance.now();
    const burst = await Promise.all(Array.from({ length: 6 }, () => call(a!)));
    const refilled = Math.ceil((performance.now() - started) / 1000);
    const passed = burst.filter((code) => code === 200).length;
    assert.ok(passed >= 2 && passed <= 2 + refilled, `caller_a: ${burst}`);
    assert.ok(burst.every((code) => code === 200 || code === 429), `caller_a: ${burst}`);
    assert.deepEqual([await call(b!), await call(b!)], [200, 200], "caller_b has a bucket of its own");
  } finally {
    await Promise.all([a!.stop(), b!.stop()]);
  }
});

test("a service that is down gets retries bounded by the retry budget, not a storm", async (t) => {
  const name = uniqueName("down");
  const nodes = await Promise.all([startNode(name), startNode(name)]);
  await nodesRegistered(name, 2);
  const downCalls = async () => (await Promise.all(nodes.map((n) => at<{ down: number }>(n, "Node.Stats")))).reduce((sum, s) => sum + s.down, 0);
  const attempts = async (c: Client, calls: number) => {
    const before = await downCalls();
    const errors = await Promise.all(Array.from({ length: calls }, () => failure(c.call(name, "Node.Down", {}))));
    assert.ok(errors.every((e) => e.code === 503), "every call fails with the service's 503");
    return (await downCalls()) - before;
  };
  const calls = 100;
  const budgeted = await attempts(await client({ retries: 3, retry: { budget: 0.2 } }), calls);
  const unbounded = await attempts(await client({ retries: 3 }), calls);
  t.diagnostic(`attempts for ${calls} calls with 3 retries: ${budgeted} with a 20% budget, ${unbounded} without`);
  // 0.2 × 100 calls, plus the 1 retry a second allowed over the 10 s window whatever the share.
  assert.ok(budgeted <= calls + 0.2 * calls + 10, `${budgeted} attempts for ${calls} calls with a 20% budget`);
  assert.equal(unbounded, calls * 4, "without a budget every call makes its 3 retries");
});
