/**
 * The floor: two Node processes exchanging length-prefixed frames (u32 length | u32 id | body)
 * over one loopback connection, the server echoing each body back untouched. No codec, no
 * headers, no routing: what is left is the cost of sockets and framing in Node itself.
 *
 * The "json-" roles add what any RPC with JSON bodies must do on top: the client encodes each
 * request and decodes each answer, the server decodes the request and encodes hello()'s answer.
 */
import net from "node:net";
import { FRAMES_PER_TURN, batchedWriter } from "../../src/transport/tcp.ts"; // the same write batching and read pacing as tsmicro's transport
import type { Roles } from "../role.ts";
import { echoRequest, hello, type EchoRequest } from "./echo.ts";

/**
 * Calls back with each complete frame's id and body; chunks are joined once a frame is complete,
 * so large frames cost one copy. At most FRAMES_PER_TURN frames a turn, the socket paused until
 * the rest are read, as tsmicro's transport reads.
 */
function frameParser(socket: net.Socket, onFrame: (id: number, body: Buffer) => void): (chunk: Buffer) => void {
  let chunks: Buffer[] = [];
  let buffered = 0;
  let needed = 8; // bytes that must be buffered before the next frame can be parsed
  let deferred = false;
  const parse = () => {
    let pending = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, buffered);
    let off = 0;
    let frames = 0;
    for (;;) {
      if (pending.length - off < 8) break;
      if (frames++ === FRAMES_PER_TURN) {
        deferred = true;
        socket.pause();
        setImmediate(() => {
          deferred = false;
          if (buffered >= needed) parse();
          if (!deferred) socket.resume();
        });
        break;
      }
      const end = off + 4 + pending.readUInt32BE(off);
      if (end > pending.length) break;
      onFrame(pending.readUInt32BE(off + 4), pending.subarray(off + 8, end));
      off = end;
    }
    pending = pending.subarray(off);
    chunks = pending.length > 0 ? [pending] : [];
    buffered = pending.length;
    needed = pending.length >= 4 ? 4 + pending.readUInt32BE(0) : 8;
  };
  return (chunk) => {
    chunks.push(chunk);
    buffered += chunk.length;
    if (buffered < needed || deferred) return;
    parse();
  };
}

function frame(id: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(8 + body.length);
  out.writeUInt32BE(4 + body.length, 0);
  out.writeUInt32BE(id, 4);
  body.copy(out, 8);
  return out;
}

function server(answer: (body: Buffer) => Buffer): Roles[string] {
  return async () => {
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      const write = batchedWriter(socket);
      socket.on("data", frameParser(socket, (id, body) => write(frame(id, answer(body)))));
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { info: (server.address() as net.AddressInfo).port };
  };
}

/** json: encode every request and decode every answer, as an RPC client with JSON bodies must. */
function client(json: boolean): Roles[string] {
  return async (ctx) => {
    const socket = net.connect({ host: "127.0.0.1", port: ctx.peer as number });
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    socket.setNoDelay(true);
    const write = batchedWriter(socket);
    const waiting = new Map<number, (answer: unknown) => void>();
    socket.on("data", frameParser(socket, (id, body) => {
      const resolve = waiting.get(id);
      waiting.delete(id);
      resolve?.(json ? JSON.parse(body.toString()) : undefined);
    }));
    const request = echoRequest(ctx.params.payload);
    const encoded = Buffer.from(JSON.stringify(request));
    let nextId = 0;
    return {
      op: () =>
        new Promise<unknown>((resolve) => {
          const id = (nextId = (nextId + 1) >>> 0);
          waiting.set(id, resolve);
          write(frame(id, json ? Buffer.from(JSON.stringify(request)) : encoded));
        }),
    };
  };
}

export const roles: Roles = {
  server: server((body) => body),
  client: client(false),
  "json-server": server((body) => Buffer.from(JSON.stringify(hello(JSON.parse(body.toString()) as EchoRequest)))),
  "json-client": client(true),
};
