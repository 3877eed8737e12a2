/** The server's handler deadlines let go of the caller's connection signal however the handler ends. */
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { test } from "node:test";
import { Server } from "../../src/server/server.ts";
import { MicroError, badRequest } from "../../src/errors.ts";

test("a handler that reads ctx.signal leaves no listener on the connection's signal, whether it returns, throws or rejects", async () => {
  const server = new Server({ name: "deadline_release" });
  server.handle("D.Returns", (_req, ctx) => (ctx.signal, { ok: true }));
  server.handle("D.Throws", (_req, ctx) => {
    void ctx.signal;
    throw badRequest("deadline_release", "thrown at once");
  });
  server.handle("D.Rejects", async (_req, ctx) => {
    void ctx.signal;
    throw badRequest("deadline_release", "rejected");
  });
  const connection = new AbortController(); // one tcp connection's signal outlives its calls
  for (const endpoint of ["D.Returns", "D.Throws", "D.Rejects"]) {
    for (let i = 0; i < 3; i++) {
      const answer = await server.dispatch({
        service: "deadline_release",
        endpoint,
        contentType: "application/json",
        headers: { Timeout: String(5e9) }, // go-micro's per-call budget, in nanoseconds
        body: Buffer.from("{}"),
        signal: connection.signal,
      });
      assert.equal(answer instanceof MicroError ? answer.code : 200, endpoint === "D.Returns" ? 200 : 400, endpoint);
    }
    assert.equal(getEventListeners(connection.signal, "abort").length, 0, `${endpoint} left listeners on the connection's signal`);
  }
});
