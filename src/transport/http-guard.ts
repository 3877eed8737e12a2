/**
 * Edge guards shared by tsmicro's HTTP servers (the RPC port's HTTP side and the http broker): no
 * byte sequence a peer sends may throw out of a request handler, and requests HTTP itself cannot
 * parse are answered with go-micro error JSON instead of Node's bare 400.
 */
import type http from "node:http";
import type { Duplex } from "node:stream";
import { MicroError, badRequest, requestEntityTooLarge, timeout } from "../errors.ts";
import { headerSafeJSON } from "./errors.ts";

/** The percent-decoded path of a request URL without its leading "/" and query; undefined for a malformed escape. */
export function decodePath(url: string | undefined): string | undefined {
  try {
    return decodeURIComponent((url ?? "/").split("?", 1)[0]!.slice(1));
  } catch {
    return undefined; // URIError: the peer sent an escape that is not UTF-8
  }
}

/**
 * Node's HTTP server timeouts that a trickle cannot reset: a request's headers must be complete
 * within headerTimeoutMs of its first byte and the whole request within requestTimeoutMs, or it
 * gets a 408 and its connection is closed (an idle timeout alone is reset by every byte).
 */
export function trickleProofTimeouts(headerTimeoutMs: number, requestTimeoutMs: number): http.ServerOptions {
  return {
    headersTimeout: headerTimeoutMs,
    requestTimeout: Math.max(requestTimeoutMs, headerTimeoutMs),
    // How often Node looks for expired requests: the cut comes at most this late.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headerTimeoutMs / 10))),
  };
}

/** The go-micro error for a request Node's HTTP parser rejected (or timed out) before a handler saw it. */
function clientErrorFor(err: NodeJS.ErrnoException, id: string): MicroError {
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") return timeout(id, "request headers or body not received in time");
  if (err.code === "HPE_HEADER_OVERFLOW") return new MicroError(id, 431, "request headers too large");
  if (err.code === "HPE_CHUNK_EXTENSIONS_OVERFLOW") return requestEntityTooLarge(id, "chunk extensions too large");
  return badRequest(id, `malformed HTTP request: ${err.code ?? err.message}`);
}

/** Writes an error response on a raw socket and closes it (the parser state is unusable after a client error). */
export function answerOnSocket(socket: Duplex, err: MicroError): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify(err);
  socket.end(
    `HTTP/1.1 ${err.code} ${err.status}\r\nContent-Type: application/json\r\nMicro-Error: ${headerSafeJSON(err)}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  socket.once("finish", () => socket.destroy()); // flushed: do not wait for the peer to close its side
}

/** Answers parse errors and header/request timeouts of server with go-micro errors naming id. */
export function answerClientErrors(server: http.Server, id: string): void {
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === "ECONNRESET" || err.code === "EPIPE") socket.destroy();
    else answerOnSocket(socket, clientErrorFor(err, id));
  });
}
