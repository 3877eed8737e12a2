/** How request bytes move between a client and a server node. */
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
  /** The calling service's name, sent by a service's client as go-micro's does. */
  fromService: "Micro-From-Service",
} as const;

export const DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024;
export const DEFAULT_DIAL_TIMEOUT_MS = 5000;
