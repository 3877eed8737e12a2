/**
 * When a client call retries: the wait before each retry (go-micro's backoff, or exponential with
 * jitter from cockatiel) and a retry budget per called service, so that a whole service being down
 * costs each caller a bounded share of extra calls instead of a retry storm.
 */
import type { ExponentialBackoff, IBackoff } from "cockatiel";
import { cockatiel } from "./cockatiel.ts";

export interface RetryOptions {
  /**
   * "micro" (default): go-micro's, 0 ms before the first retry, then 100 ms × n^e.
   * "jitter": exponential from 100 ms up to 5 s, with decorrelated jitter, so callers that failed
   * together do not retry together.
   */
  backoff?: "micro" | "jitter";
  /** Retries may be at most this share of the calls to one service within `budgetWindowMs` (e.g. 0.2). Default: no budget. */
  budget?: number;
  /** Milliseconds the budget counts calls and retries over. Default 10000. */
  budgetWindowMs?: number;
  /** Retries per second allowed whatever the share, so a client that calls rarely still retries. Default 1. */
  minRetriesPerSecond?: number;
}

export const BACKOFFS = ["micro", "jitter"] as const;

/** go-micro's backoff: 0 ms before the first retry, then 100 ms × attempt^e. */
const microBackoffMs = (retry: number) => (retry <= 1 ? 0 : Math.pow(retry - 1, Math.E) * 100);

/** Made with the first jittered retry. */
let jitter: ExponentialBackoff<unknown> | undefined;

/** Buckets per window: the budget forgets calls a tenth of a window at a time. */
const BUCKETS = 10;

/** Calls and retries to one service, in a ring of time buckets. */
class Window {
  private readonly calls = new Array<number>(BUCKETS).fill(0);
  private readonly retries = new Array<number>(BUCKETS).fill(0);
  private totalCalls = 0;
  private totalRetries = 0;
  private bucket = 0;
  private bucketEnds = 0;

  constructor(private readonly bucketMs: number) {}

  /** Moves to the bucket of `now`, forgetting the buckets it passes. */
  private advance(now: number): number {
    if (now < this.bucketEnds) return this.bucket;
    const passed = this.bucketEnds === 0 ? BUCKETS : Math.min(BUCKETS, Math.floor((now - this.bucketEnds) / this.bucketMs) + 1);
    for (let i = 0; i < passed; i++) {
      this.bucket = (this.bucket + 1) % BUCKETS;
      this.totalCalls -= this.calls[this.bucket]!;
      this.totalRetries -= this.retries[this.bucket]!;
      this.calls[this.bucket] = this.retries[this.bucket] = 0;
    }
    this.bucketEnds = now - (now % this.bucketMs) + this.bucketMs;
    return this.bucket;
  }

  call(now: number): void {
    this.calls[this.advance(now)]!++;
    this.totalCalls++;
  }

  /** Takes a retry if fewer than `allowed(calls)` were taken in the window. */
  retry(now: number, allowed: (calls: number) => number): boolean {
    const b = this.advance(now);
    if (this.totalRetries + 1 > allowed(this.totalCalls)) return false;
    this.retries[b]!++;
    this.totalRetries++;
    return true;
  }
}

export class RetryPolicy {
  private readonly windows = new Map<string, Window>();
  private readonly budget?: number;
  private readonly windowMs: number;
  private readonly minRetries: number;

  constructor(readonly options: RetryOptions = {}) {
    this.budget = options.budget;
    this.windowMs = options.budgetWindowMs ?? 10_000;
    this.minRetries = (options.minRetriesPerSecond ?? 1) * (this.windowMs / 1000);
  }

  /** The waits before each retry of one call, in order. */
  delays(): () => number {
    if (this.options.backoff === "jitter") {
      const first = (jitter ??= new (cockatiel().ExponentialBackoff)({ initialDelay: 100, maxDelay: 5000 }));
      let backoff: IBackoff<unknown> | undefined;
      return () => (backoff = backoff ? backoff.next(undefined) : first.next()).duration;
    }
    let retry = 0;
    return () => microBackoffMs(++retry);
  }

  /** Counts a call to service (its first attempt) towards its retry budget. */
  called(service: string): void {
    if (this.budget === undefined) return;
    let w = this.windows.get(service);
    if (!w) this.windows.set(service, (w = new Window(this.windowMs / BUCKETS)));
    w.call(Date.now());
  }

  /** Whether one more retry to service fits its budget (and takes it if so). */
  mayRetry(service: string): boolean {
    if (this.budget === undefined) return true;
    const budget = this.budget;
    return this.windows.get(service)?.retry(Date.now(), (calls) => budget * calls + this.minRetries) ?? true;
  }
}
