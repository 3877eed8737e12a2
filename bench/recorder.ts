/** Latency samples of one measuring window, and the closed-loop load that produces them. */

export interface WindowStats {
  /** Operations completed in the window. */
  count: number;
  /** Milliseconds. */
  p50: number;
  p99: number;
}

/** Monotonic milliseconds, comparable across processes of one machine (CLOCK_MONOTONIC). */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/**
 * Latencies of one window as a histogram of fixed size (1 µs buckets below 2 ms, then 64 buckets
 * per doubling: within 1.6 %), so recording costs no memory that grows with the window (the soak
 * measures RSS growth: a sample array would be most of it).
 */
export class Recorder {
  private static readonly EXACT = 2048;
  private static readonly SUB = 64;
  private readonly counts = new Float64Array(Recorder.EXACT + 64 * Recorder.SUB);
  private count = 0;

  record(latencyMs: number): void {
    const us = Math.max(0, Math.round(latencyMs * 1000));
    let i: number;
    if (us < Recorder.EXACT) i = us;
    else {
      const exponent = Math.floor(Math.log2(us)); // ≥ 11
      i = Recorder.EXACT + (exponent - 11) * Recorder.SUB + (Math.floor(us / 2 ** (exponent - 6)) - Recorder.SUB);
    }
    this.counts[Math.min(i, this.counts.length - 1)]!++;
    this.count++;
  }

  /** The bucket's value in ms (the middle of its range). */
  private static valueOf(i: number): number {
    if (i < Recorder.EXACT) return i / 1000;
    const exponent = 11 + Math.floor((i - Recorder.EXACT) / Recorder.SUB);
    const sub = (i - Recorder.EXACT) % Recorder.SUB;
    const width = 2 ** (exponent - 6);
    return ((Recorder.SUB + sub) * width + width / 2) / 1000;
  }

  /** The window since the last take(), which starts the next one. */
  take(): WindowStats {
    const quantile = (q: number) => {
      if (this.count === 0) return 0;
      const rank = Math.min(this.count - 1, Math.floor(q * this.count));
      let seen = 0;
      for (let i = 0; i < this.counts.length; i++) {
        seen += this.counts[i]!;
        if (seen > rank) return Recorder.valueOf(i);
      }
      return Recorder.valueOf(this.counts.length - 1);
    };
    const stats = { count: this.count, p50: quantile(0.5), p99: quantile(0.99) };
    this.counts.fill(0);
    this.count = 0;
    return stats;
  }
}

/** Runs `concurrency` loops of op until stopped, recording each op's latency. */
export function closedLoop(op: () => unknown, concurrency: number, recorder: Recorder, onError: (err: unknown) => void): () => void {
  let running = true;
  const loop = async () => {
    while (running) {
      const start = nowMs();
      try {
        await op();
      } catch (err) {
        onError(err);
        return;
      }
      recorder.record(nowMs() - start);
    }
  };
  for (let i = 0; i < concurrency; i++) void loop();
  return () => {
    running = false;
  };
}
