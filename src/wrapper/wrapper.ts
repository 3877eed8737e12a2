/**
 * go-micro's wrappers: functions that take the next step of a call path and return a step that
 * runs around it (auth, logging, tracing, metrics, resilience policies). Each kind is applied once,
 * when the client, server or subscription is built, so a path with no wrappers costs nothing.
 */
import type { Event, Message } from "../broker/broker.ts";
import type { Node } from "../registry/registry.ts";
import type { CallContext } from "../server/handler.ts";
import type { TransportRequest, TransportResponse } from "../transport/transport.ts";

/** One attempt of a client call on one chosen node (go-micro's CallWrapper). */
export interface ClientCall {
  service: string;
  endpoint: string;
  node: Node;
  /** Its headers are writable: the metadata sent with this attempt. */
  request: TransportRequest;
  /** Milliseconds this attempt may take. */
  timeoutMs: number;
  /** 0 for the first attempt. */
  attempt: number;
}
export type CallFunc = (call: ClientCall) => Promise<TransportResponse>;
export type CallWrapper = (next: CallFunc) => CallFunc;

/** Runs a decoded request through the handler (go-micro's HandlerWrapper); ctx.endpoint says which. */
export type HandlerFunc = (request: unknown, ctx: CallContext) => Promise<unknown>;
export type HandlerWrapper = (next: HandlerFunc) => HandlerFunc;

/** Publishing one encoded event (go-micro's client Publish path); message.header is writable. */
export interface Publication {
  topic: string;
  message: Message;
}
export type PublishFunc = (publication: Publication) => Promise<void>;
export type PublishWrapper = (next: PublishFunc) => PublishFunc;

/** Delivering one event to a subscription's handler, before the body is decoded. */
export type SubscriberFunc = (event: Event) => Promise<void>;
export type SubscriberWrapper = (next: SubscriberFunc) => SubscriberFunc;

/** Applies wrappers so that the FIRST in the list is the OUTERMOST (go-micro's order). */
export function wrap<F>(fn: F, wrappers: ReadonlyArray<(next: F) => F> | undefined): F {
  if (wrappers === undefined) return fn;
  let wrapped = fn;
  for (let i = wrappers.length - 1; i >= 0; i--) wrapped = wrappers[i]!(wrapped);
  return wrapped;
}
