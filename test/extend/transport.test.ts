/**
 * The Transport seam: a transport defined in the test tree (plugins/line-transport.ts) is
 * registered, served on a node's one port beside tcp frames and go-micro's HTTP, chosen by flag,
 * advertised in the registry, and picked by clients from that metadata.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Client, FlagError, Service, fromArgv, servedTransports, transports } from "../../src/index.ts";
import MemoryRegistry from "../../src/registry/memory.ts";
import { lineClients, lineServed, lineTransport } from "./plugins/line-transport.ts";

describe("a transport registered from outside src/", () => {
  const registry = new MemoryRegistry();
  let service: Service;
  let address: string;

  before(async () => {
    assert.throws(() => fromArgv(["--transport=line"]), (e: Error) => e instanceof FlagError && /unknown transport "line"/.test(e.message), "unknown before it is registered");
    transports.register("line", lineTransport);
    assert.deepEqual((await servedTransports()).map((t) => t.name), ["line", "tcp", "http"], "servers ask it first, the built-ins last");
    service = new Service({ name: "liner", registry, broker: "memory", handleSignals: false }).init(["--transport=line"]);
    service.handle("Liner.Echo", (req: unknown) => req);
    await service.start();
    const [record] = await registry.getService("liner");
    address = record!.nodes[0]!.address;
    assert.equal(record!.nodes[0]!.metadata?.transport, "line", "the node advertises the transport chosen by flag");
  });
  after(() => service.stop());

  it("a client picks it from the node's transport metadata, and the same port still answers tcp frames and go-micro HTTP", async () => {
    const client = new Client({ registry, retries: 0 }); // default preference: whatever each node advertises
    try {
      const servedBefore = lineServed;
      assert.deepEqual(await client.call("liner", "Liner.Echo", { over: "registry" }), { over: "registry" });
      assert.equal(lineServed, servedBefore + 1, "the call went over the line transport");
      assert.equal(lineClients.at(-1)!.calls, 1);
    } finally {
      await client.close();
    }
    for (const transport of ["tcp", "http"] as const) {
      const other = new Client({ registry, transport, retries: 0 });
      try {
        const servedBefore = lineServed;
        assert.deepEqual(await other.call("liner", "Liner.Echo", { over: transport }, { address }), { over: transport });
        assert.equal(lineServed, servedBefore, `the ${transport} call did not go over line`);
      } finally {
        await other.close();
      }
    }
    const res = await fetch(`http://${address}/Liner.Echo`, { method: "POST", body: '{"over":"curl"}', headers: { "Content-Type": "application/json" }, signal: AbortSignal.timeout(5000) });
    assert.deepEqual(await res.json(), { over: "curl" });
  });

  it("its errors are go-micro errors, and a client that does not know it calls such a node over HTTP", async () => {
    const client = new Client({ registry, retries: 0 });
    const unknownTransport = new Client({ registry, retries: 0, transports: [transports.get("tcp")!, transports.get("http")!] });
    try {
      const err = (await client.call("liner", "Liner.Nope", {}).catch((e: Error) => e)) as { code: number; detail: string };
      assert.equal(err.code, 404);
      assert.match(err.detail, /unknown endpoint Liner\.Nope/);
      const servedBefore = lineServed;
      assert.deepEqual(await unknownTransport.call("liner", "Liner.Echo", { over: "fallback" }), { over: "fallback" });
      assert.equal(lineServed, servedBefore);
    } finally {
      await client.close();
      await unknownTransport.close();
    }
  });
});
