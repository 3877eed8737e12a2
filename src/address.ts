/** host:port handling shared by the server, transports, brokers and registries. */

/** "host:port" → parts; accepts "[v6]:port". Port is undefined when absent. */
export function splitHostPort(address: string): { host: string; port?: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(address) ?? /^([^:]*)(?::(\d+))?$/.exec(address);
  if (!m) return { host: address }; // a bare IPv6 address
  return { host: m[1]!, port: m[2] === undefined ? undefined : Number(m[2]) };
}

/** Like Go's net.JoinHostPort: brackets IPv6 hosts. */
export const joinHostPort = (host: string, port: number) => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`);

/** A host:port that must name a port (0 for any free one); an empty host is 127.0.0.1. Throws a TypeError otherwise. */
export function parseHostPort(address: string): { host: string; port: number } {
  const { host, port } = splitHostPort(address);
  if (port === undefined || !Number.isInteger(port) || port > 65535) throw new TypeError(`address "${address}" must be host:port`);
  return { host: host || "127.0.0.1", port };
}
