/**
 * A rate limit on the server: a token bucket per endpoint (or per any key of the call, such as
 * the caller), refilled at `rate` calls per second and holding at most `burst`; a call finding it
 * empty is refused with a 429. cockatiel has no rate limiter, and a token bucket is a few lines.
 */
import { tooManyRequests } from "../errors.ts";
import type { CallContext } from "../server/handler.ts";
import { HEADER, getHeader } from "../transport/transport.ts";
import type { HandlerWrapper } from "../wrapper/wrapper.ts";

export interface RateLimitOptions {
  /** Calls per second. */
  rate: number;
  /** Calls that may come at once after a quiet spell. Default: one second's worth (`rate`). */
  burst?: number;
  /** What one bucket is for. Default: the endpoint; `perCaller` for each calling service at each endpoint. */
  key?: (ctx: CallContext) => string;
}

/** A bucket per endpoint and calling service (its Micro-From-Service header, which tsmicro and go-micro services send). */
export const perCaller = (ctx: CallContext): string => `${ctx.endpoint} ${getHeader(ctx.headers, HEADER.fromService) ?? ""}`;

/** Buckets kept before the full ones are dropped (a full bucket is what a new one would be). */
const MAX_BUCKETS = 10_000;

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  at: number;
}

/** A handler wrapper that refuses calls over the rate with a 429; `id` is the service name errors carry. */
export function rateLimitWrapper(id: string, { rate, burst = rate, key = (ctx) => ctx.endpoint }: RateLimitOptions): HandlerWrapper {
  const buckets = new Map<string, Bucket>();
  const perMs = rate / 1000;
  return (next) => (request, ctx) => {
    const k = key(ctx);
    const now = performance.now();
    let b = buckets.get(k);
    if (!b) {
      // Keys come from callers' headers: keep their number bounded.
      if (buckets.size >= MAX_BUCKETS) for (const [old, o] of buckets) if (o.tokens + (now - o.at) * perMs >= burst) buckets.delete(old);
      buckets.set(k, (b = { tokens: burst, at: now }));
    }
    b.tokens = Math.min(burst, b.tokens + (now - b.at) * perMs);
    b.at = now;
    if (b.tokens < 1) return Promise.reject(tooManyRequests(id, `${ctx.endpoint}: more than ${rate} calls per second (burst ${burst})`));
    b.tokens--;
    return next(request, ctx);
  };
}
