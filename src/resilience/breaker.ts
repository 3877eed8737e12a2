/**
 * A circuit breaker per node, on cockatiel's CircuitBreakerPolicy: after enough failures a node is
 * left out of selection; once a delay has passed one trial call decides whether it is back
 * (closed) or stays out (open again). Every state change is reported with its service and node,
 * for metrics and logs.
 */
import type { CircuitBreakerPolicy, CircuitState, IBreaker } from "cockatiel";
import { MicroError, serviceUnavailable } from "../errors.ts";
import type { Node } from "../registry/registry.ts";
import type { CallWrapper } from "../wrapper/wrapper.ts";
import { cockatiel } from "./cockatiel.ts";

export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerStateChange {
  /** The called service. */
  service: string;
  /** The node's id. */
  node: string;
  address: string;
  state: BreakerState;
}

export interface CircuitBreakerOptions {
  /** Opens after this many failures in a row. Default 5. */
  consecutiveFailures?: number;
  /** Also opens when more than this share (0–1) of the node's last `window` calls failed. Default: off. */
  failureRatio?: number;
  /** Calls the failure ratio is taken over. Default 20. */
  window?: number;
  /** Calls a node must have had before the ratio counts. Default: half the window. */
  minimumCalls?: number;
  /** Milliseconds an open breaker waits before it lets one trial call through. Default 5000. */
  halfOpenAfter?: number;
  /** Which failures count. Default: failed connections, timeouts (408) and server errors (5xx). */
  isFailure?: (err: MicroError) => boolean;
  /**
   * true (default): an open breaker refuses the calls that still reach its node (every node is
   * open) with a 503 at once. false: it only keeps selection off the node, and a call with no
   * other node left is tried; its success closes the breaker.
   */
  failFast?: boolean;
  /** Called on every state change of every node's breaker. */
  onStateChange?: (change: BreakerStateChange) => void;
}

/**
 * How long a node no call has gone to keeps its per-node state (its breaker, its latency stats):
 * nodes come and go with new ids (pods), and one gone from the registry is never called again, so
 * a long-running client would otherwise keep every node it ever called. A sweep at most once per
 * period drops them, so such state lasts at most twice this.
 */
export const FORGET_NODE_AFTER_MS = 5 * 60_000;

/** What counts against a node: it could not be reached, or it could not serve. A 4xx is the caller's fault. */
export const isNodeFailure = (err: MicroError): boolean => err.retryable || err.code === 408 || err.code >= 500;

/**
 * The breaker every client has unless told otherwise: a node whose connection just failed (or
 * timed out) is passed over for 2 s while another node is left (it may be restarting, or dead),
 * so calls stop paying for it while the registry still lists it; with no other node it is tried
 * anyway. Handler errors do not count.
 */
export const CONNECTION_BREAKER: CircuitBreakerOptions = { consecutiveFailures: 1, halfOpenAfter: 2000, isFailure: (err) => err.retryable, failFast: false };

/** What `--client_circuit_breaker` turns on when given no settings. */
export const DEFAULT_BREAKER: CircuitBreakerOptions = { consecutiveFailures: 5, failureRatio: 0.5, window: 20, halfOpenAfter: 5000 };

/** The name of a cockatiel breaker's state (cockatiel is loaded: there is a breaker). */
function stateName(s: CircuitState): BreakerState {
  const states = cockatiel().CircuitState;
  return s === states.HalfOpen ? "half-open" : s === states.Closed ? "closed" : "open"; // Isolated is open too
}

/** Opens when any of its breakers would: failures in a row, or too high a share of recent calls. */
class AnyBreaker implements IBreaker {
  constructor(private readonly breakers: IBreaker[]) {}
  get state(): unknown {
    return this.breakers.map((b) => b.state);
  }
  set state(value: unknown) {
    (value as unknown[]).forEach((s, i) => (this.breakers[i]!.state = s));
  }
  success(state: CircuitState): void {
    for (const b of this.breakers) b.success(state);
  }
  failure(state: CircuitState): boolean {
    let open = false;
    for (const b of this.breakers) open = b.failure(state) || open; // every breaker sees every failure
    return open;
  }
}

interface NodeBreaker {
  policy: CircuitBreakerPolicy;
  /** Until when (epoch ms) selection passes the node over; 0 while closed. */
  openUntil: number;
  halfOpen: boolean;
  /** When (epoch ms) a call last went through it. */
  usedAt: number;
}

/**
 * The breakers of one client's nodes, keyed by node id. Selection asks avoid() (O(1)); the call
 * wrapper runs each attempt through its node's breaker. While a node has not failed it has no
 * breaker at all unless a failure ratio is watched (which needs its successes), so the healthy
 * path costs one map lookup; a breaker that closes again is dropped, so the map holds failing nodes.
 */
export class NodeBreakers {
  private readonly breakers = new Map<string, NodeBreaker>();
  /** The settings in force, defaults filled in. */
  readonly options: Required<Omit<CircuitBreakerOptions, "failureRatio" | "onStateChange">> & Pick<CircuitBreakerOptions, "failureRatio">;
  private readonly listeners: Array<(change: BreakerStateChange) => void> = [];
  /** Nodes passed over now: while 0, selection need not look. */
  avoiding = 0;
  /** When (epoch ms) the breakers of nodes gone idle are next looked for. */
  private sweepAt = Date.now() + FORGET_NODE_AFTER_MS;

  constructor(opts: CircuitBreakerOptions = CONNECTION_BREAKER) {
    const window = opts.window ?? DEFAULT_BREAKER.window!;
    this.options = {
      consecutiveFailures: opts.consecutiveFailures ?? DEFAULT_BREAKER.consecutiveFailures!,
      failureRatio: opts.failureRatio,
      window,
      minimumCalls: opts.minimumCalls ?? Math.ceil(window / 2),
      halfOpenAfter: opts.halfOpenAfter ?? DEFAULT_BREAKER.halfOpenAfter!,
      isFailure: opts.isFailure ?? isNodeFailure,
      failFast: opts.failFast ?? true,
    };
    if (opts.onStateChange) this.listeners.push(opts.onStateChange);
  }

  /** Adds a listener for every node's state changes. */
  onStateChange(listener: (change: BreakerStateChange) => void): void {
    this.listeners.push(listener);
  }

  /** Whether selection should pass the node over: its breaker is open and not yet due a trial, or its trial is running. */
  avoid(node: Node): boolean {
    // Asked only while some node is avoided, maybe one gone for good: sweep here too, so selection stops asking.
    const now = Date.now();
    if (now >= this.sweepAt) this.forgetIdle(now);
    const b = this.breakers.get(node.id);
    return b !== undefined && (b.halfOpen || b.openUntil > now);
  }

  /** The state of a node's breaker. */
  state(nodeId: string): BreakerState {
    const b = this.breakers.get(nodeId);
    return b ? stateName(b.policy.state) : "closed";
  }

  /** Runs every attempt through its node's breaker; an open one fails the attempt at once with a retryable 503 (if failFast). */
  readonly wrapper: CallWrapper = (next) => (call) => {
    const breaker = this.breakers.get(call.node.id) ?? (this.options.failureRatio !== undefined ? this.create(call.service, call.node) : undefined);
    if (!breaker) {
      return next(call).catch((err: unknown) => {
        const e = MicroError.from(err, "go.micro.client");
        if (this.options.isFailure(e)) {
          // Its first failure (or one of several made at once: they all count, on one breaker).
          const made = this.breakers.get(call.node.id) ?? this.create(call.service, call.node);
          void made.policy.execute(() => Promise.reject(e)).catch(() => {});
        }
        throw err;
      });
    }
    const now = (breaker.usedAt = Date.now());
    if (!this.options.failFast && !breaker.halfOpen && breaker.openUntil > now) {
      // Selection had no other node: try this one, and if it answers it is back.
      return next(call).then((res) => {
        if (this.breakers.get(call.node.id) === breaker) {
          this.breakers.delete(call.node.id);
          this.changed(breaker, call.service, call.node, cockatiel().CircuitState.Closed);
        }
        return res;
      });
    }
    return breaker.policy.execute(() => next(call)).catch((err: unknown) => {
      if (!(err instanceof cockatiel().BrokenCircuitError)) throw err;
      const e = serviceUnavailable("go.micro.client", `circuit breaker open for ${call.service} node ${call.node.id} (${call.node.address})`);
      e.retryable = true; // another node may serve it
      throw e;
    });
  };

  private create(service: string, node: Node): NodeBreaker {
    const { consecutiveFailures, failureRatio, window, minimumCalls, halfOpenAfter, isFailure } = this.options;
    const { ConsecutiveBreaker, CountBreaker, circuitBreaker, handleWhen, CircuitState: states } = cockatiel();
    const breaker: IBreaker =
      failureRatio === undefined
        ? new ConsecutiveBreaker(consecutiveFailures)
        : new AnyBreaker([new ConsecutiveBreaker(consecutiveFailures), new CountBreaker({ threshold: failureRatio, size: window, minimumNumberOfCalls: minimumCalls })]);
    const policy = circuitBreaker(handleWhen((err) => isFailure(MicroError.from(err, "go.micro.client"))), { breaker, halfOpenAfter });
    const now = Date.now();
    if (now >= this.sweepAt) this.forgetIdle(now);
    const entry: NodeBreaker = { policy, openUntil: 0, halfOpen: false, usedAt: now };
    this.breakers.set(node.id, entry);
    policy.onStateChange((s) => {
      if (this.breakers.get(node.id) !== entry) return; // dropped already (closed by a call made without it)
      // A closed breaker is as good as none, unless it is counting a ratio.
      if (s === states.Closed && failureRatio === undefined) this.breakers.delete(node.id);
      this.changed(entry, service, node, s);
    });
    return entry;
  }

  /**
   * Drops the breakers no call has gone through for FORGET_NODE_AFTER_MS since their open period
   * ended (selection keeps calls off a node while it is open): their nodes are most likely gone.
   * One whose trial call runs stays.
   */
  private forgetIdle(now: number): void {
    for (const [id, b] of this.breakers) {
      if (b.halfOpen || now - Math.max(b.usedAt, b.openUntil) <= FORGET_NODE_AFTER_MS) continue;
      this.breakers.delete(id);
      if (b.openUntil > 0) this.avoiding--;
    }
    this.sweepAt = now + FORGET_NODE_AFTER_MS;
  }

  /** Records a breaker's new state, keeps `avoiding` right and tells the listeners. */
  private changed(entry: NodeBreaker, service: string, node: Node, s: CircuitState): void {
    const states = cockatiel().CircuitState;
    const avoidedBefore = entry.openUntil > 0;
    entry.halfOpen = s === states.HalfOpen;
    if (s === states.Open) entry.openUntil = Date.now() + this.options.halfOpenAfter;
    else if (s === states.Closed) entry.openUntil = 0;
    this.avoiding += (entry.openUntil > 0 ? 1 : 0) - (avoidedBefore ? 1 : 0);
    const change: BreakerStateChange = { service, node: node.id, address: node.address, state: stateName(s) };
    for (const listener of this.listeners) listener(change);
  }
}
