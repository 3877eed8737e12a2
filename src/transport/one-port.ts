/**
 * One port, several protocols: a connection's first bytes say which protocol serves it, after a
 * TLS handshake when the port requires TLS (then the protocol is told inside the TLS stream). The
 * RPC server serves its transports this way, the http broker its frame and HTTP deliveries.
 */
import net from "node:net";
import type { TLSSocketOptions } from "node:tls";
import { badRequest } from "../errors.ts";
import { tlsModule } from "./secure.ts";
import type { ServerTLS, TransportListener } from "./transport.ts";

/** A protocol on the port: which connections it takes, and how it serves (or refuses) them. */
export interface PortProtocol extends Pick<TransportListener, "serve" | "refuse"> {
  detect(head: Buffer): boolean;
}

export interface OnePortOptions {
  /** Asked in order which one a connection's first bytes speak. */
  protocols: PortProtocol[];
  /** Milliseconds a connection may take to send its first bytes (and its TLS handshake). */
  readTimeoutMs: number;
  /** Names the go-micro error a plaintext caller gets from a TLS-only port. */
  serverId: string;
  /** Serve only TLS; mutual TLS with clientCA. */
  tls?: ServerTLS;
  /** Holds the open connections, so their owner can end them. */
  sockets: Set<net.Socket>;
}

/** The first byte of a TLS record carrying a handshake (a ClientHello starts every TLS connection). */
const TLS_HANDSHAKE = 0x16;

/** A server (not yet listening) that hands each accepted connection to its protocol. */
export function onePortServer(opts: OnePortOptions): net.Server {
  const t = opts.tls;
  const secure: TLSSocketOptions | undefined = t && {
    isServer: true,
    secureContext: tlsModule().createSecureContext({ cert: t.cert, key: t.key, ca: t.clientCA }),
    requestCert: t.clientCA !== undefined,
    rejectUnauthorized: t.clientCA !== undefined,
  };
  const accept = (socket: net.Socket, needsTls: boolean) => {
    socket.setTimeout(opts.readTimeoutMs, () => socket.destroy()); // replaced once the protocol is known
    socket.once("data", (head: Buffer) => {
      socket.pause();
      if (needsTls && head[0] === TLS_HANDSHAKE) {
        socket.unshift(head); // the TLS socket reads it again as the start of the handshake
        const secured = new (tlsModule().TLSSocket)(socket, secure);
        secured.on("error", () => socket.destroy());
        secured.once("secure", () => accept(secured, false));
        return;
      }
      socket.setTimeout(0);
      const protocol = opts.protocols.find((p) => p.detect(head));
      if (!protocol) return void socket.destroy(); // none speaks it (http takes every first byte ≥ 0x20)
      if (needsTls) return protocol.refuse(socket, head, badRequest(opts.serverId, "this node requires TLS: dial it with TLS (it advertises secure=true)"));
      protocol.serve(socket, head);
      socket.resume();
    });
  };
  return net.createServer((socket) => {
    opts.sockets.add(socket);
    socket.once("close", () => opts.sockets.delete(socket));
    socket.on("error", () => {});
    accept(socket, secure !== undefined);
  });
}
