/** The tcp transport's cache of encoded request header blocks, filled to its bound and past it. */
import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";
import { MAX_BLOCKS, TcpClientTransport, requestHeaders, tcpTransport } from "../../src/transport/tcp.ts";
import { HEADER, type Headers, type ServeOptions, type TransportRequest } from "../../src/transport/transport.ts";

const body = Buffer.from("{}");
/** A call without metadata of its own, so its header block is cached; i picks a distinct endpoint. */
const plain = (i: number): TransportRequest => ({ service: "svc", endpoint: `Svc.M${i}`, contentType: "application/json", headers: { [HEADER.timeout]: "5000000000" }, body });

// First in the file: the cache is process-wide and starts empty.
test("the cache keeps up to MAX_BLOCKS blocks; the next distinct one empties it and is kept itself", () => {
  const blocks = Array.from({ length: MAX_BLOCKS }, (_, i) => requestHeaders(plain(i)));
  for (let i = 0; i < MAX_BLOCKS; i++) assert.equal(requestHeaders(plain(i)), blocks[i], `block ${i} is reused while the cache is at its bound`);
  const extra = requestHeaders(plain(MAX_BLOCKS));
  assert.equal(requestHeaders(plain(MAX_BLOCKS)), extra, "the block that emptied the cache went into the fresh one");
  const again = requestHeaders(plain(0));
  assert.notEqual(again, blocks[0], "the older blocks were dropped: the cache held no more than its bound");
  assert.deepEqual(again, blocks[0], "and the block encoded again has the same bytes");
});

/** Serves tcp frames on loopback, answering each request with its headers as JSON. */
async function echoServer(): Promise<{ address: string; close(): void }> {
  const options: ServeOptions = {
    serverId: "echo",
    maxMessageSize: 1024 * 1024,
    readTimeoutMs: 10_000,
    headerTimeoutMs: 10_000,
    track: (work) => work,
    draining: () => false,
    health: () => ({ status: "ok" }),
  };
  const listener = tcpTransport.listen(async (req) => ({ contentType: "application/json", body: Buffer.from(JSON.stringify(req.headers)) }), options);
  const server = net.createServer((socket) => listener.serve(socket, Buffer.alloc(0)));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, close: () => server.close() };
}

test("over a real connection, every call of more header combinations than the cache holds arrives with exactly its own headers", async () => {
  const server = await echoServer();
  const transport = new TcpClientTransport();
  after(async () => {
    await transport.close();
    server.close();
  });
  const contentTypes = ["application/json", "application/protobuf"];
  // 3 services × 7 endpoints × 2 content types, each call its own timeout (every 10th none), every 5th with metadata
  // of its own (not cached): more distinct blocks than MAX_BLOCKS, so the cache is emptied on the way.
  const calls = Array.from({ length: 2 * MAX_BLOCKS }, (_, i): TransportRequest => {
    const headers: Headers = i % 10 === 0 ? {} : { [HEADER.timeout]: String((i + 1) * 1_000_000) };
    if (i % 5 === 4) headers["X-Call"] = String(i);
    return { service: `svc${i % 3}`, endpoint: `Svc.M${i % 7}`, contentType: contentTypes[i % 2]!, headers, body };
  });
  const cachedBlocks = new Set(calls.filter((c) => !("X-Call" in c.headers)).map((c) => `${c.service} ${c.endpoint} ${c.contentType} ${c.headers[HEADER.timeout]}`));
  assert.ok(cachedBlocks.size > MAX_BLOCKS, `${cachedBlocks.size} distinct cached blocks`);
  const expected = (req: TransportRequest): Headers => ({
    [HEADER.service]: req.service,
    [HEADER.endpoint]: req.endpoint,
    [HEADER.contentType]: req.contentType,
    ...req.headers,
  });
  // Twice: the second round finds the first round's blocks dropped by the clears and encodes them again.
  for (const round of [1, 2]) {
    const answers = await Promise.all(calls.map((req) => transport.request(server.address, req, 10_000)));
    answers.forEach((res, i) => {
      const { [HEADER.id]: id, ...received } = JSON.parse(res.body.toString()) as Headers;
      assert.equal(typeof id, "string", "the server stamped a Micro-Id");
      assert.deepEqual(received, expected(calls[i]!), `round ${round}, call ${i}`);
    });
  }
});
