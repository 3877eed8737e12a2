/** How request bytes move between a client and a server node. */
import type { MicroError } from "../errors.ts";

/**
 * Call metadata. Keys are compared case-insensitively (as HTTP and go-micro's metadata do); every
 * transport hands servers, handlers and wrappers their keys canonicalised ("micro-id" → "Micro-Id"),
 * and getHeader() finds a key however it was written.
 */
export type Headers = Record<string, string>;

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

/** The server side: what a transport hands a decoded request to. Errors are returned, not thrown. */
export type Dispatch = (req: TransportRequest) => Promise<TransportResponse | MicroError>;

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
}

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
} as const;

export const DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024;
export const DEFAULT_DIAL_TIMEOUT_MS = 5000;
