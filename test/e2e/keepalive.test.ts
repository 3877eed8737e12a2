/**
 * Half-open connections: a node whose process is frozen (SIGSTOP: its kernel still accepts and
 * ACKs, so nothing closes) is found out by the frame protocol's ping within a few seconds, and the
 * calls waiting on it fail retryable and move to another node instead of waiting out their timeout.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { Client } from "../../src/client/client.ts";
import { Server } from "../../src/server/server.ts";
import type { MicroError } from "../../src/errors.ts";
import MemoryRegistry from "../../src/registry/memory.ts";
import { FrameKind, FrameReader, encodeFrame, type Frame } from "../../src/transport/frame.ts";
import { DEFAULT_PING_TIMEOUT_MS } from "../../src/transport/transport.ts";
import { startEdgeNode, type EdgeNode } from "../helpers/edge.ts";
import { within } from "../helpers/net.ts";

describe("a frozen node", () => {
  let frozen: EdgeNode; // another process, which this test stops and continues
  const healthy = new Server({ name: "edge" });
  healthy.handle("Greeter.Echo", (req: object) => ({ ...req, by: "healthy" }));
  const registry = new MemoryRegistry();

  before(async () => {
    frozen = await startEdgeNode();
    const healthyAddress = await healthy.start();
    // The frozen node first, so roundrobin sends every other call to it first.
    await registry.register({
      name: "edge",
      version: "latest",
      nodes: [
        { id: "edge-frozen", address: frozen.rpc.address, metadata: { transport: "tcp" } },
        { id: "edge-healthy", address: healthyAddress, metadata: { transport: "tcp" } },
      ],
    });
  });
  after(async () => {
    frozen.proc.signal("SIGCONT");
    await frozen.stop();
    await healthy.stop(100);
  });

  it("is dropped within the ping timeout, its calls fail retryable, and retried calls are answered by another node", async () => {
    const client = new Client({ registry, selector: "roundrobin", requestTimeout: 30_000, retries: 1 });
    try {
      // A pooled connection to the node, known good before it freezes.
      assert.deepEqual(await client.call("edge", "Greeter.Echo", { warm: true }, { address: frozen.rpc.address }), { warm: true });
      frozen.proc.signal("SIGSTOP");
      const started = performance.now();
      const direct = (await client.call("edge", "Greeter.Echo", {}, { address: frozen.rpc.address, retries: 0 }).catch((e: MicroError) => e)) as MicroError;
      const detectedMs = performance.now() - started;
      assert.equal(direct.code, 500);
      assert.equal(direct.retryable, true);
      assert.match(direct.detail, /connection error: .*no answer to pings for \d+ms/);
      assert.ok(detectedMs < DEFAULT_PING_TIMEOUT_MS + 2000, `the frozen node was found out after ${detectedMs.toFixed(0)} ms (30 s call timeout)`);
      console.log(`# frozen node: a call on its pooled connection failed after ${detectedMs.toFixed(0)} ms (ping timeout ${DEFAULT_PING_TIMEOUT_MS} ms, call timeout 30000 ms)`);

      // Through the registry: every other call tries the frozen node first (on a fresh connection, which its kernel accepts).
      const calls = await Promise.all(
        [0, 1, 2, 3].map(async (i) => {
          const t0 = performance.now();
          const res = await client.call("edge", "Greeter.Echo", { i });
          return { res, ms: performance.now() - t0 };
        }),
      );
      for (const [i, { res }] of calls.entries()) assert.deepEqual(res, { i, by: "healthy" });
      const slowest = Math.max(...calls.map((c) => c.ms));
      assert.ok(slowest < DEFAULT_PING_TIMEOUT_MS + 3000, `the slowest call took ${slowest.toFixed(0)} ms`);
      console.log(`# frozen node: 4 calls through the registry all answered by the healthy node, the slowest after ${slowest.toFixed(0)} ms`);

      frozen.proc.signal("SIGCONT");
      assert.deepEqual(await client.call("edge", "Greeter.Echo", { back: true }, { address: frozen.rpc.address }), { back: true }, "a thawed node is called again");
    } finally {
      await client.close();
    }
  });

  it("a server answers a ping frame with a pong of the same id", async () => {
    const sock = net.connect({ host: "127.0.0.1", port: frozen.rpc.port });
    await once(sock, "connect");
    try {
      const pong = within(
        new Promise<Frame>((resolve) => {
          const reader = new FrameReader(1024, { onFrame: resolve, onOversize: () => {}, onCorrupt: () => {} });
          sock.on("data", (c: Buffer) => reader.push(c));
        }),
        5000,
        "a pong",
      );
      sock.write(encodeFrame(FrameKind.Ping, 42, {}, Buffer.alloc(0)));
      const frame = await pong;
      assert.equal(frame.kind, FrameKind.Pong);
      assert.equal(frame.id, 42);
    } finally {
      sock.destroy();
    }
  });
});
