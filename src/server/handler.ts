/**
 * What a handler is: its function, its call context and its options. In a file of their own so
 * that proto/service.ts (typed handlers) and server.ts (routing) do not import each other.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import type { Value } from "../registry/registry.ts";
import type { Headers } from "../transport/transport.ts";

export interface CallContext {
  service: string;
  endpoint: string;
  /** Request headers: the caller's metadata plus Micro-* headers. */
  headers: Headers;
  /** When the caller stops waiting (epoch ms), from its Timeout header; the call then answers 408. */
  deadline?: number;
  /** Aborts when the caller is gone (its connection closed before the answer) or its deadline passes: stop the work. */
  signal: AbortSignal;
}

export type HandlerFn<Req = any, Res = any> = (request: Req, ctx: CallContext) => Res | Promise<Res>;

export interface HandlerOptions {
  /** Protobuf message types: bodies are then typed (binary or proto3 JSON). */
  requestSchema?: DescMessage;
  responseSchema?: DescMessage;
  /** Shapes advertised in the registry when there is no schema to derive them from. */
  request?: Value;
  response?: Value;
  metadata?: Record<string, string>;
}
