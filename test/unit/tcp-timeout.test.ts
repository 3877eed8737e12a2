import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import type { MicroError } from "../../src/errors.ts";
import { TcpClientTransport } from "../../src/transport/tcp.ts";

const request = { service: "svc", endpoint: "Svc.Slow", contentType: "application/json", headers: {}, body: Buffer.from("{}") };

test("each call times out after its own timeout with 408, on one connection", async () => {
  const silent = net.createServer((socket) => socket.resume()); // reads, never answers
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const address = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
  const transport = new TcpClientTransport();
  const started = performance.now();
  const timedOut = (timeoutMs: number) =>
    transport.request(address, request, timeoutMs).then(
      () => assert.fail("answered"),
      (err: MicroError) => ({ code: err.code, afterMs: performance.now() - started }),
    );
  // The longer timeout first: the shorter one, added later, must still fire on time.
  const [slow, fast] = await Promise.all([timedOut(400), timedOut(100)]);
  assert.equal(fast.code, 408);
  assert.equal(slow.code, 408);
  assert.ok(fast.afterMs >= 95 && fast.afterMs < 350, `100 ms timeout fired after ${fast.afterMs} ms`);
  assert.ok(slow.afterMs >= 395, `400 ms timeout fired after ${slow.afterMs} ms`);
  await transport.close();
  silent.close();
});
