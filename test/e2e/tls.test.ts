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
import HttpBroker, { HTTP_BROKER_SERVICE } from "../../src/broker/http.ts";
import type { ClientTLS } from "../../src/transport/transport.ts";
import { Service } from "../../src/service.ts";
import { FlagError, fromArgv } from "../../src/cmd/flags.ts";
import { OptionError } from "../../src/cmd/options.ts";
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

describe("TLS on the http broker", () => {
  it("a subscriber serving TLS advertises secure=true, publishers deliver over HTTPS, and plaintext or unverified deliveries are refused", async () => {
    const registry = new MemoryRegistry();
    const subscriber = new HttpBroker({ registry, tls: { cert: certs.serverCert, key: certs.serverKey, clientCA: certs.ca } });
    await subscriber.connect();
    const received: string[] = [];
    await subscriber.subscribe("vault.opened", (e) => void received.push(Buffer.from(e.message.body).toString()));
    const publishers: HttpBroker[] = [];
    const publisher = async (clientTLS: ClientTLS) => {
      const p = new HttpBroker({ registry, clientTLS });
      publishers.push(p);
      await p.connect();
      return p;
    };
    try {
      const [record] = await registry.getService(HTTP_BROKER_SERVICE);
      const node = record!.nodes[0]!;
      assert.equal(node.metadata?.secure, "true");
      const trusted = await publisher({ ca: certs.ca, cert: certs.clientCert, key: certs.clientKey });
      await trusted.publish("vault.opened", { header: {}, body: Buffer.from("over tls") });
      assert.deepEqual(received, ["over tls"]);

      // mutual TLS: a publisher without a client certificate, or one that does not trust the subscriber's CA, delivers nothing.
      const anonymous = await publisher({ ca: certs.ca });
      await assert.rejects(anonymous.publish("vault.opened", { header: {}, body: Buffer.from("anonymous") }), /certificate required|socket hang up|ECONNRESET/);
      const distrustful = await publisher({ ca: certs.otherCa, cert: certs.clientCert, key: certs.clientKey });
      await assert.rejects(distrustful.publish("vault.opened", { header: {}, body: Buffer.from("distrustful") }), /certificate/);
      // Plaintext HTTP to the subscriber's port gets no delivery through.
      const plain = await fetch(`http://${subscriber.address()}/?id=${encodeURIComponent(node.id)}`, { method: "POST", body: "{}", signal: AbortSignal.timeout(5000) }).then(
        (res) => `HTTP ${res.status}`,
        (err: Error) => err.message,
      );
      assert.doesNotMatch(plain, /HTTP 200/);
      assert.deepEqual(received, ["over tls"], "only the verified delivery reached the handler");
    } finally {
      for (const p of publishers) await p.disconnect();
      await subscriber.disconnect();
    }
  });
});

describe("TLS from flags and environment", () => {
  it("a Service given go-micro style TLS flags and MICRO_* variables serves mutual TLS on its port and broker, advertises secure=true, and its own client and publisher get through", async () => {
    const registry = new MemoryRegistry();
    const { files } = certs;
    const service = new Service({ name: "vault_service", registry, broker: "http", handleSignals: false }).init(
      ["--server_tls_cert", files.serverCert, "--server_tls_key", files.serverKey, "--client_tls_ca", files.ca],
      { env: { MICRO_SERVER_TLS_CLIENT_CA: files.ca, MICRO_CLIENT_TLS_CERT: files.clientCert, MICRO_CLIENT_TLS_KEY: files.clientKey } },
    );
    service.handle("Vault.Open", () => ({ opened: true }));
    const events: unknown[] = [];
    await service.subscribe("vault.events", (e: unknown) => void events.push(e));
    await service.start();
    const stranger = new Client({ registry, retries: 0, tls: { ca: certs.ca } }); // trusts the node, has no certificate
    try {
      const [record] = await registry.getService("vault_service");
      assert.equal(record!.nodes[0]!.metadata?.secure, "true");
      assert.deepEqual(await service.call("vault_service", "Vault.Open", {}), { opened: true });
      await service.publish("vault.events", { n: 1 });
      assert.deepEqual(events, [{ n: 1 }]);
      const err = await failure(stranger.call("vault_service", "Vault.Open", {}));
      assert.match(err.detail, /certificate required/);
    } finally {
      await stranger.close();
      await service.stop();
    }
  });

  it("a TLS file that cannot be read, or a certificate without its key, is one line naming the flag; in code, an OptionError", () => {
    assert.throws(() => fromArgv(["--server_tls_cert=/nonexistent/cert.pem"]), (e: Error) => e instanceof FlagError && /^invalid value for --server_tls_cert: cannot read "\/nonexistent\/cert.pem": ENOENT$/.test(e.message));
    assert.throws(() => fromArgv([`--client_tls_ca=${certs.dir}/server.ext`]), (e: Error) => e instanceof FlagError && /--client_tls_ca: .* is not a PEM file/.test(e.message));
    assert.throws(
      () => new Service({ registry: "memory" }).init([`--server_tls_cert=${certs.files.serverCert}`], { env: {} }),
      (e: Error) => e instanceof FlagError && /--server_tls_key .* is missing/.test(e.message),
    );
    assert.throws(() => new Service({ clientTLS: { cert: certs.clientCert } }), (e: Error) => e instanceof OptionError && e.option === "clientTLS.key");
  });
});
