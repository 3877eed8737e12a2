/**
 * One timer for many deadlines (performance.now() times), armed for the earliest. A timer per
 * call cost an insert and a removal per call and kept the young generation busy; callers mostly
 * share one budget, so a new deadline lands after the armed one and arming is rare.
 */
export class DeadlineTimer {
  private timer?: NodeJS.Timeout;
  private at = Infinity;

  /** sweep(now) handles what is due and returns the next deadline (Infinity: none). */
  constructor(private readonly sweep: (now: number) => number) {}

  /** Fires by at at the latest. */
  include(at: number): void {
    if (at < this.at) this.arm(at);
    else if (!this.timer!.hasRef()) this.timer!.ref();
  }

  /**
   * Nothing is pending: the timer no longer holds the process open. It stays armed, firing once
   * for nothing: clearing it here and arming it again for the next deadline cost an insert and a
   * removal in node's timer lists per call whenever calls ran one after another.
   */
  stop(): void {
    this.timer?.unref();
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.at = at;
    this.timer = setTimeout(this.fire, Math.max(0, at - performance.now()));
  }

  private readonly fire = () => {
    this.timer = undefined;
    this.at = Infinity;
    const next = this.sweep(performance.now());
    if (next < Infinity) this.arm(next);
  };
}
