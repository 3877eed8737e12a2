/**
 * go-micro's wrappers and lifecycle hooks, seen from outside src/: call, handler, publish and
 * subscriber wrappers set in options run in the documented order around real calls and events,
 * and read and write metadata; hooks run in order and a failing beforeStart fails start().
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import {
  MicroError,
  Service,
  StartupError,
  getHeader,
  type CallWrapper,
  type HandlerWrapper,
  type PublishWrapper,
  type SubscriberWrapper,
} from "../../src/index.ts";

const unique = (what: string) => `${what}_${randomUUID().slice(0, 8)}`;

test("call, handler, publish and subscriber wrappers run in order, first outermost, and carry metadata", async (t) => {
  const trail: string[] = [];
  const name = unique("wrapped");
  const call =
    (label: string): CallWrapper =>
    (next) =>
    async (c) => {
      trail.push(`${label}>`);
      c.request.headers[`X-${label}`] = `attempt ${c.attempt} on ${c.node.id}`;
      const res = await next(c);
      trail.push(`<${label}`);
      return res;
    };
  const handler =
    (label: string): HandlerWrapper =>
    (next) =>
    async (req, ctx) => {
      trail.push(`${label}>${ctx.endpoint}`);
      const out = await next(req, ctx);
      trail.push(`<${label}`);
      return out;
    };
  const publish: PublishWrapper = (next) => async (p) => {
    p.message.header["X-Published-By"] = "wrapper";
    trail.push(`publish ${p.topic}`);
    await next(p);
  };
  const subscriber: SubscriberWrapper = (next) => async (event) => {
    trail.push(`deliver ${getHeader(event.message.header, "x-published-by")}`);
    await next(event);
  };
  const service = new Service({
    name,
    registry: "memory",
    broker: "memory",
    handleSignals: false,
    wrapCall: [call("A"), call("B")],
    wrapHandler: [handler("H1"), handler("H2")],
    wrapPublish: [publish],
    wrapSubscriber: [subscriber],
  });
  service.handle("Echo.Call", (req: { name: string }, ctx) => {
    trail.push("handler");
    return { msg: `Hello ${req.name}`, a: getHeader(ctx.headers, "x-a"), perCall: getHeader(ctx.headers, "X-PER-CALL") };
  });
  const received = new Promise<unknown>((resolve) => void service.subscribe("wrapped.topic", (msg) => resolve(msg)));
  await service.start();
  t.after(() => service.stop());

  const perCall: CallWrapper = (next) => async (c) => {
    trail.push("perCall>");
    c.request.headers["X-Per-Call"] = "yes";
    return next(c);
  };
  const out = (await service.call(name, "Echo.Call", { name: "davie" }, { wrapCall: [perCall] })) as Record<string, string>;
  const nodeId = (await service.describe()).nodes[0]!.id;
  assert.deepEqual(out, { msg: "Hello davie", a: `attempt 0 on ${nodeId}`, perCall: "yes" });
  // The client's wrappers outside the call's own; the handler's wrappers in the server around the handler.
  assert.deepEqual(trail.splice(0), ["A>", "B>", "perCall>", "H1>Echo.Call", "H2>Echo.Call", "handler", "<H2", "<H1", "<B", "<A"]);

  await service.publish("wrapped.topic", { n: 1 });
  assert.deepEqual(await received, { n: 1 });
  assert.deepEqual(trail.splice(0), ["publish wrapped.topic", "deliver wrapper"]);
});

test("an error a wrapper throws reaches the caller as a MicroError", async (t) => {
  const name = unique("denied");
  const deny: HandlerWrapper = (next) => async (req, ctx) => {
    if (getHeader(ctx.headers, "authorization") !== "Bearer ok") throw new MicroError(name, 401, "no token");
    return next(req, ctx);
  };
  const failingCall: CallWrapper = () => async () => {
    throw new Error("the wrapper broke");
  };
  const service = new Service({ name, registry: "memory", broker: "memory", handleSignals: false, wrapHandler: [deny] });
  service.handle("Echo.Call", (req: unknown) => req);
  await service.start();
  t.after(() => service.stop());
  const refused = await service.call(name, "Echo.Call", {}).catch((e: unknown) => e);
  assert.ok(refused instanceof MicroError && refused.code === 401 && refused.detail === "no token", String(refused));
  assert.deepEqual(await service.call(name, "Echo.Call", { ok: 1 }, { headers: { Authorization: "Bearer ok" } }), { ok: 1 });
  const broken = await service.call(name, "Echo.Call", {}, { wrapCall: [failingCall] }).catch((e: unknown) => e);
  assert.ok(broken instanceof MicroError && broken.code === 500 && /the wrapper broke/.test(broken.detail), String(broken));
});

test("lifecycle hooks run in go-micro's order around start and stop", async () => {
  const trail: string[] = [];
  const name = unique("hooks");
  const service = new Service({
    name,
    registry: "memory",
    broker: "memory",
    handleSignals: false,
    beforeStart: [() => void trail.push("beforeStart 1"), async () => void trail.push("beforeStart 2")],
    afterStart: [async () => void trail.push(`afterStart registered=${(await (await service.registry()).getService(name)).length}`)],
    beforeStop: [async () => void trail.push(`beforeStop registered=${(await (await service.registry()).getService(name)).length}`)],
    afterStop: [() => void trail.push("afterStop")],
  });
  service.handle("Echo.Call", (req: unknown) => req);
  await service.start();
  assert.deepEqual(trail, ["beforeStart 1", "beforeStart 2", "afterStart registered=1"]);
  await service.stop();
  assert.deepEqual(trail, ["beforeStart 1", "beforeStart 2", "afterStart registered=1", "beforeStop registered=1", "afterStop"]);
});

test("a throwing beforeStart fails start() with a StartupError and starts nothing", async () => {
  const name = unique("hookfail");
  let listened = false;
  const service = new Service({
    name,
    registry: "memory",
    broker: "memory",
    handleSignals: false,
    beforeStart: [
      () => {
        throw new Error("config missing");
      },
    ],
    afterStart: [() => void (listened = true)],
  });
  const err = await service.start().catch((e: unknown) => e);
  assert.ok(err instanceof StartupError, String(err));
  assert.match(err.message, new RegExp(`^${name}: a beforeStart hook failed: config missing$`));
  assert.equal(listened, false);
  await assert.rejects((await service.registry()).getService(name), /not found/);
});
