/**
 * The transports clients and servers know, by name. A server asks them in order which one a new
 * connection speaks; the newest registered is asked first, and the built-ins come last: tcp
 * (frames, whose first byte is < 0x20), then go-micro's HTTP, which takes every other connection
 * (so curl and go-micro peers, and the errors for garbage, are always answered).
 */
import { httpTransport } from "./http.ts";
import { tcpTransport } from "./tcp.ts";
import type { Transport } from "./transport.ts";

const known: Transport[] = [tcpTransport, httpTransport];

/** Makes a transport known to every client and server created afterwards; one of the same name is replaced in its place. */
export function registerTransport(transport: Transport): void {
  const i = known.findIndex((t) => t.name === transport.name);
  if (i >= 0) known[i] = transport;
  else known.unshift(transport);
}

/** The known transports, in the order servers ask them. */
export function transports(): Transport[] {
  return [...known];
}

export function transportNames(): string[] {
  return known.map((t) => t.name);
}
