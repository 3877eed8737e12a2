/**
 * Attacks on a node's edges, each against a node in another process: the request is answered
 * with a go-micro error and the node keeps serving.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { Client, type CallOptions } from "../../src/client/client.ts";
import { Server, type CallContext } from "../../src/server/server.ts";
import { FrameKind, encodeFrame } from "../../src/transport/frame.ts";
import type { MicroError } from "../../src/errors.ts";
import MemoryRegistry from "../../src/registry/memory.ts";
import HttpBroker, { HTTP_BROKER_SERVICE } from "../../src/broker/http.ts";
import { sharedToken } from "../../src/auth/auth.ts";
import { Service } from "../../src/service.ts";
import { assertServing, exchange, memoryMiB, startEdgeNode, type EdgeNode } from "../helpers/edge.ts";
import { startTs, waitUntil, within } from "../helpers/net.ts";

/** The status and go-micro error of the first response in raw. */
function firstError(raw: string): { status: number; error: { id: string; code: number; detail: string; status: string } } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1]);
  let body = raw.slice(raw.indexOf("\r\n\r\n") + 4);
  const length = /Content-Length: (\d+)/i.exec(raw);
  if (length) body = body.slice(0, Number(length[1]));
  else if (/Transfer-Encoding: chunked/i.test(raw)) body = body.slice(body.indexOf("\r\n") + 2, body.indexOf("\r\n") + 2 + parseInt(body, 16));
  return { status, error: JSON.parse(body) };
}

describe("malformed requests", () => {
  let node: EdgeNode;
  before(async () => (node = await startEdgeNode()));
  after(() => node.stop());

  const post = (path: string) => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`;

  it("malformed percent-escapes and URLs are a 400 (or the broker's 404 for no such subscription), and both ports keep serving", async () => {
    const rpc = firstError(await exchange(node.rpc.port, post("/%E0%A4%A")));
    assert.equal(rpc.status, 400);
    assert.equal(rpc.error.code, 400);
    assert.match(rpc.error.detail, /percent-escape/);
    const escape = firstError(await exchange(node.broker.port, post("/?id=%E0%A4%A")));
    assert.equal(escape.status, 404);
    assert.equal(escape.error.code, 404);
    const unparsable = firstError(await exchange(node.broker.port, post("//[")));
    assert.equal(unparsable.status, 400, "a URL that new URL() cannot parse");
    const body = firstError(await exchange(node.broker.port, post(node.subPath).replace("{}", "{[")));
    assert.equal(body.status, 400, "a body that is no broker message");
    await assertServing(node);
  });

  it("what HTTP cannot parse gets go-micro JSON: 400 for garbage, 431 for oversized headers", async () => {
    for (const port of [node.rpc.port, node.broker.port]) {
      const garbage = firstError(await exchange(port, "GET\x01 /\r\n\r\n"));
      assert.equal(garbage.status, 400);
      assert.equal(garbage.error.code, 400);
      const huge = firstError(await exchange(port, `POST / HTTP/1.1\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`));
      assert.equal(huge.status, 431);
      assert.equal(huge.error.code, 431);
    }
    await assertServing(node);
  });
});

describe("every wait is bounded", () => {
  it("a tcp dial to a node that answers no SYN gives up within the call's time (or the dial timeout), and later calls dial afresh", async () => {
    const hole = startTs(fileURLToPath(new URL("fixtures/blackhole.ts", import.meta.url)));
    try {
      const port = Number((await hole.waitForLine(/^listening \d+/)).split(" ")[1]);
      const fillers = [0, 1].map(() => net.connect({ host: "127.0.0.1", port }));
      await Promise.all(fillers.map((s) => once(s, "connect"))); // the accept queue is now full
      const address = `127.0.0.1:${port}`;
      const client = new Client({ registry: new MemoryRegistry(), transport: "tcp", retries: 0, dialTimeout: 2000 });
      const timed = async (requestTimeout: number) => {
        const started = performance.now();
        const err = await client.call("hole", "Any.Call", {}, { address, requestTimeout }).then(
          () => assert.fail("a call to a node that never accepts succeeded"),
          (e: MicroError) => e,
        );
        return { ms: performance.now() - started, err };
      };
      try {
        // The call's own timeout bounds the dial; concurrent calls on the same pooled dial fail with it.
        const first = await Promise.all([timed(500), timed(500), timed(500)]);
        for (const { ms, err } of first) {
          assert.ok(ms >= 450 && ms < 1500, `a call with a 500 ms timeout took ${ms.toFixed(0)} ms`);
          assert.match(err.detail, /connection error: .*(dial timeout|closed before it was established)/);
        }
        // The timed-out dial was dropped: the next call dials again and is bounded again, now by the dial timeout.
        const second = await timed(10_000);
        assert.ok(second.ms >= 1900 && second.ms < 3000, `a call capped by a 2000 ms dial timeout took ${second.ms.toFixed(0)} ms`);
        assert.match(second.err.detail, /dial timeout: not connected within 2000ms/);
        const node = await startEdgeNode();
        try {
          assert.deepEqual(await client.call("edge", "Greeter.Echo", { a: 1 }, { address: node.rpc.address }), { a: 1 });
        } finally {
          await node.stop();
        }
      } finally {
        await client.close();
        for (const s of fillers) s.destroy();
      }
    } finally {
      hole.signal("SIGKILL");
      await hole.exited();
    }
  });

  it("slowloris: 100 connections trickling header bytes get a 408 and are cut within the header timeout, on the RPC port and the broker", async () => {
    const headerTimeoutMs = 1000;
    const node = await startEdgeNode({ headerTimeoutMs, readTimeoutMs: 3000 });
    try {
      const request = Buffer.from(`POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ${"a".repeat(200)}\r\n\r\n`);
      const trickle = (port: number) =>
        within(
          new Promise<{ ms: number; raw: string }>((resolve) => {
            const sock = net.connect({ host: "127.0.0.1", port });
            const chunks: Buffer[] = [];
            let sent = 0;
            let started = 0;
            let timer: NodeJS.Timeout | undefined;
            sock.on("connect", () => {
              started = performance.now();
              // One byte every 100 ms: each resets an idle timer, none completes the headers.
              const drip = () => {
                if (sock.writable && sent < request.length) sock.write(request.subarray(sent, ++sent));
                timer = setTimeout(drip, 100);
              };
              drip();
            });
            sock.on("data", (c: Buffer) => chunks.push(c));
            sock.on("error", () => {});
            sock.on("close", () => {
              clearTimeout(timer);
              resolve({ ms: performance.now() - started, raw: Buffer.concat(chunks).toString() });
            });
          }),
          15_000,
          `a slowloris connection on port ${port} to be cut`,
        );
      const ports = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? node.rpc.port : node.broker.port));
      const results = await Promise.all(ports.map(trickle));
      const slowest = Math.max(...results.map((r) => r.ms));
      for (const { raw } of results) {
        assert.match(raw, /^HTTP\/1\.1 408 /);
        assert.equal(JSON.parse(raw.slice(raw.indexOf("\r\n\r\n") + 4)).code, 408);
      }
      // Cut once the header timeout passes, plus Node's check interval (a tenth of it) and scheduling slack.
      assert.ok(slowest < headerTimeoutMs + 1000, `the slowest slowloris connection was cut after ${slowest.toFixed(0)} ms`);
      console.log(`# slowloris: 100 connections, each got a 408; the slowest was cut after ${slowest.toFixed(0)} ms (header timeout ${headerTimeoutMs} ms)`);
      await assertServing(node);
    } finally {
      await node.stop();
    }
  });

  it("the http broker refuses an oversized or misaddressed delivery before buffering it: 413/404 before the body, 413 while reading a chunked one", async () => {
    const node = await startEdgeNode(); // default limit: 4 MiB
    try {
      const before = memoryMiB(node.proc.pid);
      const MiB = 1024 * 1024;
      /** Sends the head, then body chunks (if any) until the answer comes; returns it and the body bytes sent. */
      const deliver = (head: string, bodyBytes: number) =>
        within(
          new Promise<{ raw: string; sent: number }>((resolve) => {
            const sock = net.connect({ host: "127.0.0.1", port: node.broker.port });
            const chunk = Buffer.alloc(MiB, 0x61);
            let sent = 0;
            let raw = "";
            const pump = () => {
              while (sent < bodyBytes && raw === "" && !sock.destroyed) {
                const piece = `${chunk.length.toString(16)}\r\n${chunk.toString()}\r\n`;
                sent += chunk.length;
                if (!sock.write(piece)) return void sock.once("drain", pump);
              }
            };
            sock.on("connect", () => {
              sock.write(head);
              if (bodyBytes > 0) pump();
            });
            sock.on("data", (c: Buffer) => {
              raw += c.toString();
              if (raw.includes("\r\n\r\n")) sock.destroy(); // answered: an attacker would stop here too
            });
            sock.on("error", () => {});
            sock.on("close", () => resolve({ raw, sent }));
          }),
          30_000,
          "the broker's answer",
        );
      const declared = `Content-Length: ${200 * MiB}\r\n`;
      const big = await deliver(`POST ${node.subPath} HTTP/1.1\r\nHost: x\r\n${declared}\r\n`, 0);
      assert.match(big.raw, /^HTTP\/1\.1 413 /, "a declared 200 MB body is refused with no body sent");
      const unknown = await deliver(`POST /no-such-subscription HTTP/1.1\r\nHost: x\r\n${declared}\r\n`, 0);
      assert.match(unknown.raw, /^HTTP\/1\.1 404 /, "an unknown subscription is refused with no body sent");
      const chunked = await deliver(`POST ${node.subPath} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`, 200 * MiB);
      // The chunked body never ends (no last chunk is sent), so a 413 at all means it came while the body was read;
      // how much the sender got out before it noticed depends on how busy both processes are, and is only printed.
      assert.match(chunked.raw, /^HTTP\/1\.1 413 /, "a chunked body past the limit is refused while it is read");
      const afterMem = memoryMiB(node.proc.pid);
      console.log(`# 200 MB deliveries: subscriber RSS ${before.rss.toFixed(0)} → ${afterMem.rss.toFixed(0)} MiB, peak ${afterMem.peak.toFixed(0)} MiB; the chunked one was cut after ${(chunked.sent / MiB).toFixed(0)} MiB`);
      assert.ok(afterMem.peak < before.peak + 64, `peak RSS grew from ${before.peak.toFixed(0)} to ${afterMem.peak.toFixed(0)} MiB`);
      await assertServing(node);
    } finally {
      await node.stop();
    }
  });
});

describe("backpressure", () => {
  const body = Buffer.from(JSON.stringify({ pad: "x".repeat(64 * 1024) }));
  const requests = {
    tcp: encodeFrame(FrameKind.Request, 1, { "Micro-Endpoint": "Greeter.Echo", "Content-Type": "application/json" }, body),
    http: Buffer.concat([Buffer.from(`POST / HTTP/1.1\r\nHost: x\r\nMicro-Endpoint: Greeter.Echo\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`), body]),
  };
  for (const [protocol, frame] of Object.entries(requests)) it(`a ${protocol} peer that sends requests but never reads the answers cannot make the node buffer them`, async () => {
    const node = await startEdgeNode();
    try {
      const before = memoryMiB(node.proc.pid);
      const sock = net.connect({ host: "127.0.0.1", port: node.rpc.port });
      sock.pause(); // never read: every answer stays in the node's send queue or the kernel's buffers
      await once(sock, "connect");
      let sent = 0;
      const until = performance.now() + 4000;
      // Write as fast as the node reads, for a while: without backpressure it reads (and answers) everything.
      while (performance.now() < until && sent < 400 * 1024 * 1024) {
        sent += frame.length;
        if (!sock.write(frame)) {
          const drained = await Promise.race([once(sock, "drain").then(() => true), new Promise((r) => setTimeout(r, until - performance.now(), false))]);
          if (!drained) break;
        }
      }
      const afterMem = memoryMiB(node.proc.pid);
      console.log(`# backpressure (${protocol}): ${(sent / 1024 / 1024).toFixed(0)} MiB of echo requests written, node RSS peak ${before.peak.toFixed(0)} → ${afterMem.peak.toFixed(0)} MiB`);
      assert.ok(afterMem.peak < before.peak + 100, `the node's peak RSS grew from ${before.peak.toFixed(0)} to ${afterMem.peak.toFixed(0)} MiB`);
      sock.destroy();
      await assertServing(node);
    } finally {
      await node.stop();
    }
  });
});

describe("one deadline per call", () => {
  const server = new Server({ name: "slow" });
  server.handle("Slow.Call", async (req: { ms: number }) => {
    await new Promise((r) => setTimeout(r, req.ms));
    return { slept: req.ms };
  });
  /** How each Slow.Watch call ended: its handler saw the caller go, or finished its work. */
  const watched: string[] = [];
  server.handle("Slow.Watch", async (_req: unknown, ctx: CallContext) => {
    const abandoned = await new Promise<boolean>((resolve) => {
      const done = setTimeout(() => resolve(false), 3000);
      ctx.signal.addEventListener("abort", () => (clearTimeout(done), resolve(true)), { once: true });
    });
    watched.push(abandoned ? `stopped: ${(ctx.signal.reason as Error).message}` : "finished");
    return {};
  });
  let address: string;
  let client: Client;
  before(async () => {
    address = await server.start();
    client = new Client({ registry: new MemoryRegistry(), transport: "tcp" });
  });
  after(async () => {
    await client.close();
    await server.stop(100);
  });

  const timed = async (opts: CallOptions) => {
    const started = performance.now();
    const err = await client.call("slow", "Slow.Call", { ms: 3000 }, { address, ...opts }).then(
      () => assert.fail("the slow call succeeded"),
      (e: MicroError) => e,
    );
    return { ms: performance.now() - started, err };
  };

  it("the call's timeout spans every retry: 5 retries of 300 ms attempts end at the 700 ms deadline with a 408", async () => {
    const { ms, err } = await timed({ requestTimeout: 300, retries: 5, timeout: 700 });
    assert.equal(err.code, 408);
    // The last attempt ends on the client's clock ("no response") or, given the few ms left, on the server's.
    assert.match(err.detail, /call timeout: the call's 700ms passed after [23] attempts: (call timeout: no response|Slow\.Call exceeded the caller's \d+ms deadline)/);
    assert.ok(ms >= 650 && ms < 1200, `the call ended after ${ms.toFixed(0)} ms`);
  });

  it("an AbortSignal fails the call at once with a 408, before or during an attempt, and no retry follows", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("the user left")), 100);
    const during = await timed({ requestTimeout: 5000, retries: 3, signal: controller.signal });
    assert.equal(during.err.code, 408);
    assert.equal(during.err.detail, "call cancelled: the user left");
    assert.ok(during.ms >= 90 && during.ms < 600, `the aborted call ended after ${during.ms.toFixed(0)} ms`);
    const before = await timed({ signal: AbortSignal.abort("gone") });
    assert.equal(before.err.detail, "call cancelled: gone");
    assert.ok(before.ms < 100);
    assert.deepEqual(await client.call("slow", "Slow.Call", { ms: 1 }, { address, signal: new AbortController().signal }), { slept: 1 });
  });

  it("a handler's ctx.signal aborts when its caller gives up (http: the timed-out request's connection; tcp: the client's connection)", async () => {
    for (const transport of ["http", "tcp"] as const) {
      const caller = new Client({ registry: new MemoryRegistry(), transport, retries: 0 });
      const call = caller.call("slow", "Slow.Watch", {}, { address, requestTimeout: transport === "http" ? 200 : 5000 }).catch((e: MicroError) => e);
      if (transport === "tcp") setTimeout(() => void caller.close(), 200);
      assert.equal(((await call) as MicroError).code, transport === "http" ? 408 : 500);
      await waitUntil(() => watched.length > 0, 2000, `the ${transport} handler to see its caller go`);
      // On http the caller's 200 ms timeout and the deadline it sent end together: either may reach the handler first.
      const ends = transport === "http" ? ["stopped: the caller's connection closed", "stopped: the caller's deadline passed"] : ["stopped: the caller's connection closed"];
      const seen = watched.splice(0);
      assert.equal(seen.length, 1, `one end per call: ${seen.join(", ")}`);
      assert.ok(ends.includes(seen[0]!), `the handler saw its caller go: ${seen[0]}`);
      await caller.close();
    }
  });

  it("calls beyond maxInFlight on a busy pooled connection fail at once with a 503 instead of queueing", async () => {
    const busy = new Client({ registry: new MemoryRegistry(), transport: "tcp", retries: 0, poolSize: 1, maxInFlight: 3 });
    try {
      const inFlight = [1, 2, 3].map(() => busy.call("slow", "Slow.Call", { ms: 300 }, { address }));
      const started = performance.now();
      const err = (await busy.call("slow", "Slow.Call", { ms: 300 }, { address }).catch((e: MicroError) => e)) as MicroError;
      assert.equal(err.code, 503);
      assert.match(err.detail, /3 calls in flight on each of its 1 connections/);
      assert.ok(performance.now() - started < 150, "the call beyond the cap waited");
      assert.deepEqual(await Promise.all(inFlight), [{ slept: 300 }, { slept: 300 }, { slept: 300 }]);
    } finally {
      await busy.close();
    }
  });
});

describe("auth", () => {
  it("an Auth whose verify() throws answers a go-micro 500 over both protocols, and the server keeps serving", async () => {
    const failing = {
      credentials: () => ({}),
      verify: (): undefined => {
        throw new Error("token store unreachable");
      },
    };
    const server = new Server({ name: "flaky_auth", auth: failing });
    server.handle("Flaky.Call", () => ({ ran: true }));
    const address = await server.start();
    const clients = (["tcp", "http"] as const).map((transport) => new Client({ registry: new MemoryRegistry(), transport, retries: 0 }));
    try {
      for (const client of clients) {
        const err = (await client.call("flaky_auth", "Flaky.Call", {}, { address }).catch((e: MicroError) => e)) as MicroError;
        assert.equal(err.code, 500, String(client));
        assert.match(err.detail, /token store unreachable/);
      }
    } finally {
      for (const client of clients) await client.close();
      await server.stop();
    }
  });

  it("with a shared token, the RPC port (both protocols) and the http broker answer 401 without it and 403 with a wrong one, and run nothing", async () => {
    const registry = new MemoryRegistry();
    const server = new Server({ name: "guarded", auth: sharedToken("s3cret") });
    let calls = 0;
    server.handle("Guarded.Call", () => ({ calls: ++calls }));
    const address = await server.start();
    const broker = new HttpBroker({ registry, auth: sharedToken("s3cret") });
    await broker.connect();
    const received: string[] = [];
    await broker.subscribe("guarded.topic", (e) => void received.push(Buffer.from(e.message.body).toString()));
    const clients: Client[] = [];
    const client = (transport: "tcp" | "http", token?: string) => {
      const c = new Client({ registry, transport, retries: 0, auth: token === undefined ? undefined : sharedToken(token) });
      clients.push(c);
      return c;
    };
    try {
      for (const transport of ["tcp", "http"] as const) {
        const refused = async (c: Client) => ((await c.call("guarded", "Guarded.Call", {}, { address }).catch((e: MicroError) => e)) as MicroError).code;
        assert.equal(await refused(client(transport)), 401, `${transport} without a token`);
        assert.equal(await refused(client(transport, "guess")), 403, `${transport} with a wrong token`);
        assert.deepEqual(await client(transport, "s3cret").call("guarded", "Guarded.Call", {}, { address }), { calls: 1 + (transport === "http" ? 1 : 0) });
      }
      assert.equal(calls, 2, "refused calls ran no handler");

      // A forged event from someone who can read the registry: refused before its body is read.
      const [sub] = await registry.getService(HTTP_BROKER_SERVICE);
      const url = `http://${broker.address()}/?id=${encodeURIComponent(sub!.nodes[0]!.id)}`;
      const forged = JSON.stringify({ Header: { "Micro-Topic": "guarded.topic" }, Body: Buffer.from("forged").toString("base64") });
      for (const [authorization, status] of [[undefined, 401], ["Bearer guess", 403]] as const) {
        const res = await fetch(url, { method: "POST", body: forged, headers: authorization ? { Authorization: authorization } : {}, signal: AbortSignal.timeout(5000) });
        assert.equal(res.status, status);
        assert.equal(((await res.json()) as { code: number }).code, status);
      }
      const publisher = new HttpBroker({ registry, auth: sharedToken("s3cret") });
      await publisher.connect();
      try {
        await publisher.publish("guarded.topic", { header: {}, body: Buffer.from("signed") });
      } finally {
        await publisher.disconnect();
      }
      assert.deepEqual(received, ["signed"], "only the signed event reached the handler");
    } finally {
      for (const c of clients) await c.close();
      await broker.disconnect();
      await server.stop(100);
    }
  });

  it("a Service's auth option guards its server, and its own client sends the credentials", async () => {
    const registry = new MemoryRegistry();
    const service = new Service({ name: "guarded_service", registry, broker: "memory", auth: sharedToken("s3cret"), handleSignals: false });
    service.handle("Guarded.Call", () => ({ ok: true }));
    await service.start();
    const stranger = new Client({ registry, retries: 0 });
    try {
      assert.deepEqual(await service.call("guarded_service", "Guarded.Call", {}), { ok: true });
      const refused = (await stranger.call("guarded_service", "Guarded.Call", {}).catch((e: MicroError) => e)) as MicroError;
      assert.equal(refused.code, 401);
    } finally {
      await stranger.close();
      await service.stop();
    }
  });
});
