/**
 * The latency-aware strategy: each node's response time as an exponentially weighted moving
 * average (EWMA) and its calls in flight; a pick draws two nodes at random and takes the one with
 * the lower (EWMA × (in flight + 1)) — "power of two choices", O(1) per pick whatever the number
 * of nodes, and it spreads load instead of piling it on the one fastest node. A node not measured
 * lately is tried once (a probe), so a node that was slow and recovered gets traffic back. A node
 * not called for FORGET_NODE_AFTER_MS is forgotten: its stats were as stale as none.
 */
import { MicroError } from "../errors.ts";
import type { Node } from "../registry/registry.ts";
import { FORGET_NODE_AFTER_MS, isNodeFailure } from "../resilience/breaker.ts";
import type { CallWrapper } from "../wrapper/wrapper.ts";
import type { SelectionStrategy } from "./selector.ts";

export interface LatencyOptions {
  /** Weight of the newest sample in the average (0–1]. Default 0.3. */
  alpha?: number;
  /** Milliseconds after its last sample a node is due one probe call. Default 2000. */
  probeAfterMs?: number;
}

interface Stats {
  /** Milliseconds; 0 until the first sample. */
  ewma: number;
  inFlight: number;
  /** performance.now() of the last sample, or of the last probe sent. */
  seenAt: number;
}

export class LatencyStrategy implements SelectionStrategy {
  private readonly stats = new Map<string, Stats>();
  private readonly alpha: number;
  private readonly probeAfterMs: number;
  /** performance.now() at which sample() next looks for nodes to forget. */
  private sweepAt = performance.now() + FORGET_NODE_AFTER_MS;

  constructor(opts: LatencyOptions = {}) {
    this.alpha = opts.alpha ?? 0.3;
    this.probeAfterMs = opts.probeAfterMs ?? 2000;
  }

  select(pool: readonly Node[]): Node {
    if (pool.length === 1) return pool[0]!;
    const i = Math.floor(Math.random() * pool.length);
    let j = Math.floor(Math.random() * (pool.length - 1));
    if (j >= i) j++; // two different nodes
    const now = performance.now();
    const a = pool[i]!;
    const b = pool[j]!;
    const picked = this.cost(a, now) <= this.cost(b, now) ? a : b;
    const s = this.stats.get(picked.id);
    if (s && now - s.seenAt > this.probeAfterMs) s.seenAt = now; // its probe goes now: one per period, not a stampede
    return picked;
  }

  /** The average response time of a node in milliseconds (0: not measured yet). */
  latency(nodeId: string): number {
    return this.stats.get(nodeId)?.ewma ?? 0;
  }

  /**
   * Measures every attempt. One the node failed (unreachable, timed out, 5xx) counts as having
   * taken its whole timeout: it cost the caller no less. A 4xx is the caller's and counts as answered.
   */
  readonly wrapCall: CallWrapper = (next) => (call) => {
    const s = this.entry(call.node.id);
    s.inFlight++;
    const started = performance.now();
    return next(call).then(
      (res) => {
        this.sample(s, performance.now() - started);
        return res;
      },
      (err: unknown) => {
        const took = performance.now() - started;
        this.sample(s, isNodeFailure(MicroError.from(err, "go.micro.client")) ? Math.max(call.timeoutMs, took) : took);
        throw err;
      },
    );
  };

  private cost(node: Node, now: number): number {
    const s = this.stats.get(node.id);
    if (!s) return 0; // never measured: try it
    if (s.inFlight === 0 && now - s.seenAt > this.probeAfterMs) return 0; // due a probe
    return (s.ewma || 1) * (s.inFlight + 1); // not measured yet but busy: no longer free
  }

  private entry(id: string): Stats {
    let s = this.stats.get(id);
    if (!s) this.stats.set(id, (s = { ewma: 0, inFlight: 0, seenAt: performance.now() }));
    return s;
  }

  private sample(s: Stats, ms: number): void {
    s.inFlight--;
    s.ewma = s.ewma === 0 ? ms : s.ewma + this.alpha * (ms - s.ewma);
    const now = performance.now();
    s.seenAt = now;
    if (now >= this.sweepAt) this.forgetIdle(now);
  }

  /** Drops the stats of nodes not seen for FORGET_NODE_AFTER_MS (most likely gone), but not of one a call is running on. */
  private forgetIdle(now: number): void {
    for (const [id, s] of this.stats) if (s.inFlight === 0 && now - s.seenAt > FORGET_NODE_AFTER_MS) this.stats.delete(id);
    this.sweepAt = now + FORGET_NODE_AFTER_MS;
  }
}
