/**
 * TLS and mutual TLS on a node's one RPC port (TLS first, then tcp frames or HTTP inside it) and on
 * the http broker's subscriber endpoint, with certificates made at test time.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Client } from "../../src/client/client.ts";
import { Server } from "../../src/server/server.ts";
import type { MicroError } from "../../src/errors.ts";
import MemoryRegistry from "../../src/registry/memory.ts";
import { makeTestCerts, type TestCerts } from "../helpers/certs.ts";

let certs: TestCerts;
before(() => (certs = makeTestCerts()));
after(() => certs.cleanup());

/** A server on a fresh memory registry, registered with the metadata a Service would give it. */
async function startNode(tls: ConstructorParameters<typeof Server>[0]["tls"]) {
  const server = new Server({ name: "vault", tls });
  let calls = 0;
  server.handle("Vault.Open", (req: object) => ({ ...req, calls: ++calls }));
  const address = await server.start();
  const registry = new MemoryRegistry();
  await registry.register({ name: "vault", version: "latest", nodes: [{ id: "vault-1", address, metadata: { transport: "tcp", secure: "true" } }] });
  return { server, address, registry, calls: () => calls };
}

const failure = (p: Promise<unknown>) => p.then(() => assert.fail("the call succeeded"), (e: MicroError) => e);

describe("TLS on the RPC port", () => {
  it("a client dials TLS to a node advertising secure=true, over tcp frames and over HTTP", async () => {
    const node = await startNode({ cert: certs.serverCert, key: certs.serverKey });
    try {
      for (const transport of ["tcp", "http"] as const) {
        const client = new Client({ registry: node.registry, transport, retries: 0, tls: { ca: certs.ca } });
        try {
          assert.deepEqual(await client.call("vault", "Vault.Open", { over: transport }), { over: transport, calls: node.calls() });
        } finally {
          await client.close();
        }
      }
      // A client that does not trust the node's CA refuses it.
      const distrustful = new Client({ registry: node.registry, retries: 0, tls: { ca: certs.otherCa } });
      try {
        const err = await failure(distrustful.call("vault", "Vault.Open", {}));
        assert.match(err.detail, /connection error: .*(certificate|self.signed)/i);
      } finally {
        await distrustful.close();
      }
    } finally {
      await node.server.stop(100);
    }
  });

  it("a plaintext client gets a clear 400 in its own protocol, and no handler runs", async () => {
    const node = await startNode({ cert: certs.serverCert, key: certs.serverKey });
    try {
      for (const transport of ["tcp", "http"] as const) {
        const plain = new Client({ registry: new MemoryRegistry(), transport, retries: 0 });
        try {
          const err = await failure(plain.call("vault", "Vault.Open", {}, { address: node.address }));
          assert.equal(err.code, 400, `${transport}: ${JSON.stringify(err)}`);
          assert.equal(err.detail, "this node requires TLS: dial it with TLS (it advertises secure=true)");
        } finally {
          await plain.close();
        }
      }
      assert.equal(node.calls(), 0);
    } finally {
      await node.server.stop(100);
    }
  });

  it("mutual TLS: a client with a certificate from the client CA is served on both protocols, one without a certificate is refused", async () => {
    const node = await startNode({ cert: certs.serverCert, key: certs.serverKey, clientCA: certs.ca });
    try {
      for (const transport of ["tcp", "http"] as const) {
        const anonymous = new Client({ registry: node.registry, transport, retries: 0, tls: { ca: certs.ca } });
        const known = new Client({ registry: node.registry, transport, retries: 0, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } });
        try {
          const err = await failure(anonymous.call("vault", "Vault.Open", {}));
          assert.equal(err.code, 500);
          assert.match(err.detail, /connection error: .*certificate required/);
          assert.deepEqual(await known.call("vault", "Vault.Open", { over: transport }), { over: transport, calls: node.calls() });
        } finally {
          await anonymous.close();
          await known.close();
        }
      }
      assert.equal(node.calls(), 2, "only the clients with a certificate reached the handler");
    } finally {
      await node.server.stop(100);
    }
  });
});
