/**
 * A bulkhead per endpoint on the server (cockatiel's BulkheadPolicy): at most `maxConcurrent`
 * calls of an endpoint run at once and `maxQueued` wait; a call beyond that is refused at once
 * with a 503, which clients retry on another node. A slow endpoint so cannot take every socket,
 * timer and byte of memory of the process from the others.
 */
import type { BulkheadPolicy } from "cockatiel";
import { serviceUnavailable, timeout } from "../errors.ts";
import type { HandlerWrapper } from "../wrapper/wrapper.ts";
import { cockatiel } from "./cockatiel.ts";

export interface BulkheadOptions {
  /** Calls of one endpoint running at once. */
  maxConcurrent: number;
  /** Calls of one endpoint waiting for a slot. Default 0. */
  maxQueued?: number;
}

/** A handler wrapper holding one bulkhead per endpoint; `id` is the service name errors carry. */
export function bulkheadWrapper(id: string, { maxConcurrent, maxQueued = 0 }: BulkheadOptions): HandlerWrapper {
  const { BulkheadPolicy, BulkheadRejectedError, TaskCancelledError } = cockatiel();
  const bulkheads = new Map<string, BulkheadPolicy>();
  return (next) => async (request, ctx) => {
    let bulkhead = bulkheads.get(ctx.endpoint);
    if (!bulkhead) bulkheads.set(ctx.endpoint, (bulkhead = new BulkheadPolicy(maxConcurrent, maxQueued)));
    // A call that has to wait gives the bulkhead its signal, so it is dropped once its caller has
    // stopped waiting; reading ctx.signal costs, so a call that runs at once does not.
    const signal = bulkhead.executionSlots > 0 ? undefined : ctx.signal;
    try {
      return await bulkhead.execute(() => next(request, ctx), signal);
    } catch (err) {
      if (err instanceof BulkheadRejectedError) {
        throw serviceUnavailable(id, `${ctx.endpoint} is at capacity: ${maxConcurrent} calls running and ${maxQueued} queued`);
      }
      if (err instanceof TaskCancelledError) throw timeout(id, `${ctx.endpoint}: the caller stopped waiting while the call was queued`);
      throw err;
    }
  };
}
