/**
 * mdns between tsmicro and real go-micro, inside a network namespace this test creates: go-micro's
 * mdns joins the multicast group on every interface it finds, so it must never run on the
 * machine's own. The namespace has nothing but loopback (up, multicast on, 224.0.0.0/4 routed to
 * it); both sides run in it through `ip netns exec`, and it is deleted afterwards.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { after, before, describe } from "node:test";
import { fileURLToPath } from "node:url";
import { GO_MICRO_VERSIONS, Peer, cell, inNetns, runPeer, startPeer } from "./peers.ts";

const DAVIE = { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" };
const NOT_FOUND = { id: "student_service", code: 404, detail: 'no student named "nobody"', status: "Not Found" };
const ROW = "mdns registry (netns)";
const example = (part: string) => fileURLToPath(new URL(`../../examples/student/${part}.ts`, import.meta.url));
const netns = `tsmicro-interop-${process.pid}`;
const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 });

/** A walkthrough program (tsmicro, default mdns registry) run inside the namespace. */
function startTsmicro(part: string, args: string[] = []): Peer {
  const [command, argv] = inNetns(netns, process.execPath, ["--import", "tsx", example(part), ...args]);
  return new Peer("tsmicro", spawn(command, argv, { env: { ...process.env, MICRO_LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "pipe"] }));
}

/** examples/student/client.ts: one line, the student's JSON or the error's. */
async function tsmicroCall(name: string): Promise<Record<string, unknown>> {
  const client = startTsmicro("client", [name]);
  try {
    const line = await client.next((l) => !("text" in l), 20_000, "answer line");
    return line;
  } finally {
    await client.stop("SIGKILL");
  }
}

describe(ROW, () => {
  before(() => {
    ip("netns", "add", netns);
    ip("-n", netns, "link", "set", "lo", "up");
    ip("-n", netns, "link", "set", "lo", "multicast", "on");
    ip("-n", netns, "route", "add", "224.0.0.0/4", "dev", "lo");
  });
  after(() => {
    ip("netns", "delete", netns);
  });

  for (const version of GO_MICRO_VERSIONS) {
    const mdns = { MICRO_REGISTRY: "mdns" };

    cell(ROW, version, "go client → tsmicro server", async () => {
      const server = startTsmicro("server");
      try {
        await server.next((l) => typeof l.text === "string" && l.text.includes("ready at"), 30_000, "ready line");
        const call = (studentName: string, contentType = "application/json") =>
          runPeer(version, { ...mdns, PEER_MODE: "client", PEER_NAME: studentName, PEER_CONTENT_TYPE: contentType }, ["student", "error"], 20_000, netns);
        assert.deepEqual(await call("davie"), { student: DAVIE }, "JSON body");
        assert.deepEqual(await call("davie", "application/protobuf"), { student: DAVIE }, "protobuf body");
        assert.deepEqual(await call("nobody"), { error: NOT_FOUND }, "a handler error keeps its id, code and detail");
      } finally {
        await server.stop();
      }
    });

    cell(ROW, version, "tsmicro client → go server", async () => {
      const server = startPeer(version, { ...mdns, PEER_MODE: "server" }, netns);
      try {
        await server.next((l) => "ready" in l, 20_000, "ready line");
        assert.deepEqual(await tsmicroCall("davie"), DAVIE);
        assert.deepEqual(await tsmicroCall("nobody"), NOT_FOUND, "the Go handler's error keeps its id, code and detail");
      } finally {
        await server.stop("SIGKILL");
      }
      // A node that died does not answer queries: gone at once.
      assert.deepEqual(await tsmicroCall("davie"), {
        id: "go.micro.client",
        code: 500,
        detail: "error selecting student_service node: not found",
        status: "Internal Server Error",
      });
    });
  }
});
