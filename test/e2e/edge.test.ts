/**
 * Attacks on a node's edges, each against a node in another process: the request is answered
 * with a go-micro error and the node keeps serving.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { assertServing, exchange, startEdgeNode, type EdgeNode } from "../helpers/edge.ts";

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

  const post = (path: string, headers = "") => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${headers}Content-Length: 2\r\nConnection: close\r\n\r\n{}`;

  it("a malformed percent-escape in the path is a 400 on the RPC port and on the broker, and both keep serving", async () => {
    for (const port of [node.rpc.port, node.broker.port]) {
      const { status, error } = firstError(await exchange(port, post("/%E0%A4%A")));
      assert.equal(status, 400);
      assert.equal(error.code, 400);
      assert.match(error.detail, /percent-escape/);
    }
    const { status } = firstError(await exchange(node.broker.port, post(node.subPath, "Micro-Broker-Header: %E0%A4%A\r\n")));
    assert.equal(status, 400, "a malformed escape in the broker's message header");
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
