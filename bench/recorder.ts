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

export class Recorder {
  private samples = new Float64Array(1 << 16);
  private count = 0;

  record(latencyMs: number): void {
    if (this.count === this.samples.length) {
      const grown = new Float64Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.count++] = latencyMs;
  }

  /** The window since the last take(), which starts the next one. */
  take(): WindowStats {
    const sorted = this.samples.subarray(0, this.count).sort();
    const at = (q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
    const stats = { count: this.count, p50: at(0.5), p99: at(0.99) };
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
