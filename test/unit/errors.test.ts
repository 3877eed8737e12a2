import assert from "node:assert/strict";
import { test } from "node:test";
import { MicroError, badRequest, notFoundError, timeout } from "../../src/index.ts";

test("errors serialise as go-micro's JSON, in its field order", () => {
  assert.equal(JSON.stringify(badRequest("svc", "bad")), '{"id":"svc","code":400,"detail":"bad","status":"Bad Request"}');
  assert.equal(String(timeout("go.micro.client", "slow")), '{"id":"go.micro.client","code":408,"detail":"slow","status":"Request Timeout"}');
  assert.equal(
    JSON.stringify(notFoundError("student_service")),
    '{"id":"go.micro.client","code":500,"detail":"error selecting student_service node: not found","status":"Internal Server Error"}',
  );
});

test("parse round-trips error JSON and wraps anything else as a 500", () => {
  const e = MicroError.parse('{"id":"a","code":409,"detail":"d","status":"Conflict"}');
  assert.deepEqual(e.toJSON(), { id: "a", code: 409, detail: "d", status: "Conflict" });
  const wrapped = MicroError.parse("<html>bad gateway</html>", "x");
  assert.equal(wrapped.code, 500);
  assert.equal(wrapped.detail, "<html>bad gateway</html>");
});

test("from() keeps a plain error's message and never its stack", () => {
  const err = MicroError.from(new Error("disk full"), "svc");
  assert.deepEqual(err.toJSON(), { id: "svc", code: 500, detail: "disk full", status: "Internal Server Error" });
  assert.ok(!JSON.stringify(err).includes(" at "));
  assert.equal(MicroError.from("plain", "svc").detail, "plain");
});
