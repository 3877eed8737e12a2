/** The policies' own rules, without the network: breaker ratio and failure kinds, rate-limit keys, the bulkhead's queue. */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  MicroError,
  CONNECTION_BREAKER,
  LatencyStrategy,
  Service,
  NodeBreakers,
  RetryPolicy,
  bulkheadWrapper,
  internalServerError,
  notFound,
  rateLimitWrapper,
  type BreakerStateChange,
  type CallContext,
  type ClientCall,
  type TransportResponse,
} from "../../src/index.ts";
import { FORGET_NODE_AFTER_MS } from "../../src/resilience/breaker.ts";

const node = { id: "svc-1", address: "127.0.0.1:1" };
const call: ClientCall = {
  service: "svc",
  endpoint: "A.B",
  node,
  request: { service: "svc", endpoint: "A.B", contentType: "", headers: {}, body: new Uint8Array() },
  timeoutMs: 1000,
  attempt: 0,
};
const ok = async (): Promise<TransportResponse> => ({ contentType: "", body: new Uint8Array() });
const failWith = (err: MicroError) => async (): Promise<TransportResponse> => Promise.reject(err);
const ctx = (endpoint: string, headers: Record<string, string> = {}): CallContext => ({ service: "svc", endpoint, headers, signal: new AbortController().signal });

test("a breaker watching a ratio opens when more than that share of the window failed, and 4xx answers do not count", async () => {
  const changes: BreakerStateChange[] = [];
  const breakers = new NodeBreakers({ consecutiveFailures: 100, failureRatio: 0.5, window: 10, minimumCalls: 10, halfOpenAfter: 60_000, onStateChange: (c) => changes.push(c) });
  const attempt = (next: () => Promise<TransportResponse>) => breakers.wrapper(next)(call).catch(() => {});
  for (let i = 0; i < 20; i++) await attempt(failWith(notFound("svc", "no such thing"))); // the caller's fault, not the node's
  assert.equal(breakers.state(node.id), "closed");
  for (let i = 0; i < 5; i++) await attempt(ok);
  for (let i = 0; i < 5; i++) await attempt(failWith(internalServerError("svc", "boom")));
  assert.equal(breakers.state(node.id), "closed", "5 of 10 is not more than half");
  await attempt(failWith(internalServerError("svc", "boom")));
  assert.equal(breakers.state(node.id), "open");
  assert.equal(breakers.avoid(node), true);
  assert.deepEqual(changes, [{ service: "svc", node: node.id, address: node.address, state: "open" }]);
  const refused = await breakers.wrapper(ok)(call).then(
    () => assert.fail("an open breaker lets no call through"),
    (e: MicroError) => e,
  );
  assert.equal(refused.code, 503);
  assert.equal(refused.retryable, true, "another node may serve it");
});

test("rate limit: one bucket per key, refusals are 429", async () => {
  const limited = rateLimitWrapper("svc", { rate: 1, burst: 2, key: (c) => c.headers.caller ?? "" })(async () => "done");
  const from = (caller: string) => limited({}, ctx("A.B", { caller })).then(
    () => 200,
    (e: MicroError) => e.code,
  );
  assert.deepEqual([await from("a"), await from("a"), await from("a"), await from("b")], [200, 200, 429, 200]);
});

test("bulkhead: one per endpoint, a call beyond running and queued is a 503, a queued call whose caller left is a 408", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const limited = bulkheadWrapper("svc", { maxConcurrent: 1, maxQueued: 1 })(async () => gate);
  const caller = new AbortController();
  const running = limited({}, ctx("A.B"));
  const queued = limited({}, { ...ctx("A.B"), signal: caller.signal });
  const beyond = await limited({}, ctx("A.B")).catch((e: MicroError) => e);
  assert.equal((beyond as MicroError).code, 503);
  const other = limited({}, ctx("A.Other")); // another endpoint has its own bulkhead
  caller.abort();
  release();
  await Promise.all([running, other]);
  assert.equal(((await queued.catch((e: MicroError) => e)) as MicroError).code, 408);
});

test("the default breaker only steers selection: a failed connection keeps the node out, but a call with no other node left is tried and its success closes it", async () => {
  const changes: string[] = [];
  const breakers = new NodeBreakers(CONNECTION_BREAKER);
  breakers.onStateChange((c) => changes.push(c.state));
  const refused = connectionRefused();
  await breakers.wrapper(failWith(refused))(call).catch(() => {});
  await waitFor(() => breakers.avoid(node)); // cockatiel counts the failure a few microtasks later
  assert.equal(breakers.avoiding, 1);
  await breakers.wrapper(failWith(internalServerError("svc", "handler error")))(call).catch(() => {}); // tried anyway, and not a connection failure
  assert.equal(breakers.avoid(node), true);
  await breakers.wrapper(ok)(call);
  assert.equal(breakers.avoid(node), false);
  assert.equal(breakers.avoiding, 0);
  assert.deepEqual(changes, ["open", "closed"]);
});

function connectionRefused(): MicroError {
  const err = internalServerError("go.micro.client", "connection error: 127.0.0.1:1: ECONNREFUSED");
  err.retryable = true;
  return err;
}

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond());
}

test("flags reach a service's client: latency selector, breaker settings, retry budget and backoff", async () => {
  const service = new Service({ name: "flagged", registry: "memory" }).init([
    "--selector=latency",
    "--client_circuit_breaker=failures=2,half_open=1s",
    "--client_retry_budget=0.1",
    "--client_retry_backoff=jitter",
  ]);
  const c = await service.client();
  try {
    assert.ok(c.selector.strategy instanceof LatencyStrategy);
    assert.deepEqual([c.breakers.options.consecutiveFailures, c.breakers.options.halfOpenAfter, c.breakers.options.failFast], [2, 1000, true]);
    assert.deepEqual([c.retryPolicy.options.budget, c.retryPolicy.options.backoff], [0.1, "jitter"]);
    const plain = await new Service({ name: "plain", registry: "memory" }).client();
    assert.deepEqual([plain.breakers.options.consecutiveFailures, plain.breakers.options.failFast, plain.retryPolicy.options.budget], [1, false, undefined], "defaults: the connection breaker, no budget");
    await plain.close();
  } finally {
    await c.close();
  }
});

test("retry policy: go-micro's backoff, jittered exponential within its bounds, and a budget that refills as its window moves on", async () => {
  const micro = new RetryPolicy().delays();
  assert.deepEqual([micro(), micro(), Math.round(micro())], [0, 100, 658]);
  const jitter = new RetryPolicy({ backoff: "jitter" }).delays();
  const waits = Array.from({ length: 12 }, jitter);
  assert.ok(waits.every((w) => w >= 0 && w <= 5000), `${waits}`);
  assert.ok(new Set(waits.map(Math.round)).size > 6, `jittered, not a fixed sequence: ${waits}`);

  const budget = new RetryPolicy({ budget: 0.2, budgetWindowMs: 200, minRetriesPerSecond: 0 });
  for (let i = 0; i < 50; i++) budget.called("svc");
  let allowed = 0;
  for (let i = 0; i < 50; i++) if (budget.mayRetry("svc")) allowed++;
  assert.equal(allowed, 10, "20% of 50 calls");
  assert.equal(budget.mayRetry("other"), true, "a service with no calls counted is not held back");
  await new Promise((r) => setTimeout(r, 250)); // the window moving on is what is tested
  budget.called("svc");
  assert.equal(budget.mayRetry("svc"), false, "old calls and retries are forgotten together: 0.2 × 1 call allows none");
  for (let i = 0; i < 4; i++) budget.called("svc");
  assert.equal(budget.mayRetry("svc"), true, "0.2 × 5 calls allows one");
});

test("failures made at once on a node with no breaker yet all count on one breaker", async () => {
  const breakers = new NodeBreakers({ consecutiveFailures: 3, halfOpenAfter: 60_000 });
  const failing = breakers.wrapper(failWith(internalServerError("svc", "boom")));
  await Promise.all([1, 2, 3].map(() => failing(call).catch(() => {})));
  await waitFor(() => breakers.state(node.id) === "open");
});

test("a breaker no call has gone through for FORGET_NODE_AFTER_MS after its open period is dropped (nodes come and go), and selection stops avoiding its node", async (t) => {
  let now = 1_000_000;
  t.mock.method(Date, "now", () => now);
  // Open longer than the forget period: a node is not forgotten while selection keeps calls off it.
  const breakers = new NodeBreakers({ ...CONNECTION_BREAKER, halfOpenAfter: 2 * FORGET_NODE_AFTER_MS });
  const gone = { id: "svc-gone", address: "127.0.0.1:1" };
  const recent = { id: "svc-recent", address: "127.0.0.1:2" };
  const healthy = { id: "svc-healthy", address: "127.0.0.1:3" };
  const refused = async (n: typeof node) => {
    await breakers.wrapper(failWith(connectionRefused()))({ ...call, node: n }).catch(() => {});
    await waitFor(() => breakers.avoid(n));
  };
  await refused(gone);
  now += FORGET_NODE_AFTER_MS + 1;
  await refused(recent); // a breaker made a period on looks for idle ones: gone's is still open
  assert.equal(breakers.avoiding, 2);
  now += 2 * FORGET_NODE_AFTER_MS + 1; // gone's open period ended more than the forget period ago, recent's just now
  assert.equal(breakers.avoid(healthy), false); // selection asks about the nodes it has, and so sweeps
  assert.equal(breakers.avoiding, 1, "gone's breaker was dropped");
  assert.equal(breakers.state(gone.id), "closed");
  assert.equal(breakers.state(recent.id), "open", "recent's breaker stays");
});

test("a breaker watching a ratio keeps its count while its node is called, past the forget period", async (t) => {
  let now = 1_000_000;
  t.mock.method(Date, "now", () => now);
  const breakers = new NodeBreakers({ consecutiveFailures: 100, failureRatio: 0.5, window: 10, minimumCalls: 10, halfOpenAfter: 60_000 });
  const boom = failWith(internalServerError("svc", "boom"));
  const failing = async (n: typeof node, times: number) => {
    for (let i = 0; i < times; i++) await breakers.wrapper(boom)({ ...call, node: n }).catch(() => {});
  };
  await failing(node, 5);
  now += FORGET_NODE_AFTER_MS / 2;
  await failing(node, 4);
  now += FORGET_NODE_AFTER_MS / 2 + 1;
  await failing({ id: "svc-other", address: "127.0.0.1:2" }, 1); // a new breaker: the sweep runs
  assert.equal(breakers.state(node.id), "closed", "9 calls: fewer than the minimum");
  await failing(node, 1);
  assert.equal(breakers.state(node.id), "open", "the 10th call counted with the 9 before it");
});
