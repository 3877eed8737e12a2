/** How request bytes move between a client and a server node. */
import type { Socket } from "node:net";
import type { MicroError } from "../errors.ts";

/**
 * Call metadata. Keys are compared case-insensitively (as HTTP and go-micro's metadata do); every
 * transport hands servers, handlers and wrappers their keys canonicalised as Go's
 * http.CanonicalHeaderKey does ("micro-id" and "MICRO-ID" → "Micro-Id"), and getHeader() finds a
 * key however it was written.
 */
export type Headers = Record<string, string>;

/** Keys seen are remembered (bounded): a fleet sends the same few keys over and over. */
const canonicalKeys = new Map<string, string>();
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Go's CanonicalMIMEHeaderKey: the first letter and each letter after a hyphen upper case, the rest lower; a key that is not an HTTP token is left alone. */
export function canonicalHeaderKey(key: string): string {
  let canonical = canonicalKeys.get(key);
  if (canonical === undefined) {
    canonical = TOKEN.test(key) ? key.toLowerCase().replace(/(^|-)([a-z])/g, (_, d: string, c: string) => d + c.toUpperCase()) : key;
    if (canonicalKeys.size >= 1024) canonicalKeys.clear();
    canonicalKeys.set(key, canonical);
  }
  return canonical;
}

/** The value of header `name`, whatever the case of its key. */
export function getHeader(headers: Headers, name: string): string | undefined {
  const exact = headers[name];
  if (exact !== undefined) return exact;
  const lower = name.toLowerCase();
  for (const key in headers) if (key.toLowerCase() === lower) return headers[key];
  return undefined;
}

export interface TransportRequest {
  service: string;
  endpoint: string;
  contentType: string;
  /** Call metadata (go-micro's context metadata); travels as headers. */
  headers: Headers;
  body: Uint8Array;
  /** Server side: aborts when the caller's connection closes before the answer. */
  signal?: AbortSignal;
}

export interface TransportResponse {
  contentType: string;
  body: Uint8Array;
}

/** What the server answers a request with: a response, or the go-micro error to send back. */
export type Answer = TransportResponse | MicroError;

/** The server side: what a transport hands a decoded request to. Errors are returned, not thrown. */
export interface Dispatch {
  (req: TransportRequest): Promise<Answer>;
  /**
   * Set by the RPC server: the same, but the answer itself when the handler returned at once, so a
   * transport can write it with no promise made or awaited per call (the tcp transport does).
   */
  immediate?: (req: TransportRequest) => Answer | Promise<Answer>;
}

export interface ClientTransport {
  /** Rejects with a MicroError; connection failures and timeouts are marked retryable. */
  request(address: string, req: TransportRequest, timeoutMs: number): Promise<TransportResponse>;
  close(): Promise<void>;
  toString(): string;
}

export interface ClientTransportOptions {
  /** Connections kept per node address. */
  poolSize?: number;
  /** Largest response accepted, in bytes. */
  maxMessageSize?: number;
  /** Calls waiting on one pooled connection; with every connection of the pool this busy, a call fails at once with a 503. Default 10000. */
  maxInFlight?: number;
  /** Milliseconds a connection may take to establish; a call waits no longer than this or its own timeout. Default 5000. */
  dialTimeout?: number;
  /** Milliseconds of silence on a tcp connection after which the client pings the node. Default 1000. */
  pingInterval?: number;
  /** Milliseconds a tcp connection may stay silent, pings unanswered, before it is dropped and its calls fail retryable. Default 3000. */
  pingTimeout?: number;
  /** Dial TLS, verified with these (an empty object: the system's CAs). */
  tls?: ClientTLS;
}

/** A server's certificate and key (PEM), and for mutual TLS the CA its clients' certificates must come from. */
export interface ServerTLS {
  cert: string | Buffer;
  key: string | Buffer;
  /** Require a client certificate signed by this CA (mutual TLS). */
  clientCA?: string | Buffer;
}

/** What a client dials TLS with (PEM): the CA to verify nodes by (default: the system's), and its own certificate for mutual TLS. */
export interface ClientTLS {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}

/** The registry metadata of a node that only speaks TLS (go-micro's http broker uses the same key). */
export const SECURE_METADATA = "secure";

/** go-micro's header names. */
export const HEADER = {
  service: "Micro-Service",
  endpoint: "Micro-Endpoint",
  method: "Micro-Method",
  /** The caller's per-attempt timeout in nanoseconds; the server's deadline for the handler. */
  timeout: "Timeout",
  id: "Micro-Id",
  error: "Micro-Error",
  contentType: "Content-Type",
  /** The calling service's name, sent by a service's client as go-micro's does. */
  fromService: "Micro-From-Service",
} as const;

export const DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024;
export const DEFAULT_DIAL_TIMEOUT_MS = 5000;
export const DEFAULT_PING_INTERVAL_MS = 1000;
export const DEFAULT_PING_TIMEOUT_MS = 3000;
/** Idle time before the kernel's TCP keepalive probes a connection (it then finds a vanished host; a frozen process, whose kernel still answers, only the ping finds). */
export const KEEPALIVE_DELAY_MS = 10_000;

/** What GET /metrics answers: a scrape of the node's metrics. */
export type MetricsSource = () => Promise<{ contentType: string; body: string }>;

/** What a server hands each transport it serves on its port. */
export interface ServeOptions {
  serverId: string;
  maxMessageSize: number;
  /** Milliseconds a peer may stall in the middle of a request. */
  readTimeoutMs: number;
  /** Milliseconds an HTTP request's headers may take from its first byte. */
  headerTimeoutMs: number;
  /** Called around every dispatched request, so the server can drain. */
  track<T>(work: Promise<T>): Promise<T>;
  /** True while the server drains. */
  draining(): boolean;
  /** The node's health, for transports that answer health checks. */
  health(): { status: string };
  /** The node's metrics (Prometheus text), for transports that answer GET /metrics; absent when metrics are off. */
  metrics?: MetricsSource;
}

/** A transport's server side on one server's port. */
export interface TransportListener {
  /** Serves a connection this transport detected; head is what was already read from it. */
  serve(socket: Socket, head: Buffer): void;
  /** Answers err in this transport's protocol on a connection it will not serve, and closes it. */
  refuse(socket: Socket, head: Buffer, err: MicroError): void;
  /** Stops whatever the listener runs besides its connections (timers). */
  close(): void;
}

/**
 * One way of carrying calls, both sides: clients dial nodes that advertise its name in their
 * `transport` metadata, and every server serves it on its one port, telling it from the other
 * transports by a connection's first bytes. Register one with `transports.register(name, it)` (cmd/plugins.ts).
 */
export interface Transport {
  /** What nodes advertise as `transport` metadata and `--transport` chooses. */
  readonly name: string;
  /** Client side: a dialer with its own connections (one per Client). */
  dial(opts: ClientTransportOptions): ClientTransport;
  /** Whether a connection whose first bytes (at least one) are head speaks this transport. */
  detect(head: Buffer): boolean;
  /** Server side, for one server. */
  listen(dispatch: Dispatch, opts: ServeOptions): TransportListener;
}
