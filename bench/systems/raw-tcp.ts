/**
 * The floor: two Node processes exchanging length-prefixed frames (u32 length | u32 id | body)
 * over one loopback connection, the server echoing each body back untouched. No codec, no
 * headers, no routing: what is left is the cost of sockets and framing in Node itself.
 */
import net from "node:net";
import { FRAMES_PER_TURN, batchedWriter } from "../../src/transport/tcp.ts"; // the same write batching and read pacing as tsmicro's transport
import type { Roles } from "../role.ts";
import { echoRequest } from "./echo.ts";

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

export const roles: Roles = {
  async server() {
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      const write = batchedWriter(socket);
      socket.on("data", frameParser(socket, (id, body) => write(frame(id, body))));
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { info: (server.address() as net.AddressInfo).port };
  },

  async client(ctx) {
    const socket = net.connect({ host: "127.0.0.1", port: ctx.peer as number });
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    socket.setNoDelay(true);
    const write = batchedWriter(socket);
    const waiting = new Map<number, () => void>();
    socket.on("data", frameParser(socket, (id) => {
      const resolve = waiting.get(id);
      waiting.delete(id);
      resolve?.();
    }));
    const body = Buffer.from(JSON.stringify(echoRequest(ctx.params.payload)));
    let nextId = 0;
    return {
      op: () =>
        new Promise<void>((resolve) => {
          const id = (nextId = (nextId + 1) >>> 0);
          waiting.set(id, resolve);
          write(frame(id, body));
        }),
    };
  },
};
