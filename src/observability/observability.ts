/**
 * A service node's tracing and metrics, put in front of the wrappers the program gave: tracing
 * outermost (so metrics and the program's wrappers run, and log, inside the span), then metrics,
 * then the program's own.
 */
import type { TracerProvider } from "@opentelemetry/api";
import type { Registry as MetricsRegistry } from "prom-client";
import type { ResolvedOptions } from "../cmd/options.ts";
import { NodeMetrics, type NodeIdentity } from "./metrics.ts";
import { NodeTracing } from "./tracing.ts";

export interface ObservabilityOptions {
  /** Prometheus metrics at GET /metrics on the node's port. Default true; --metrics=false turns them off. */
  metrics?: boolean;
  /** A prom-client Registry of the program's to put the metrics in (default: one of the node's own). */
  metricsRegistry?: MetricsRegistry;
  /** OpenTelemetry spans and trace context propagation. Default true (no-ops until an SDK is registered). */
  tracing?: boolean;
  /** Default: the global tracer provider the SDK registers. */
  tracerProvider?: TracerProvider;
}

type Wrapped = Pick<ResolvedOptions, "wrapCall" | "wrapHandler" | "wrapPublish" | "wrapSubscriber">;

export class NodeObservability {
  readonly metrics?: NodeMetrics;
  private readonly tracing?: NodeTracing;

  constructor(opts: ObservabilityOptions, node: NodeIdentity, brokerName: () => string) {
    if (opts.metrics !== false) this.metrics = new NodeMetrics(node, opts.metricsRegistry);
    if (opts.tracing !== false) this.tracing = new NodeTracing({ ...node, broker: brokerName, tracerProvider: opts.tracerProvider });
  }

  /** The options with this node's wrappers first in each list. */
  wrap<O extends Wrapped>(opts: O): O {
    const layers = [this.tracing, this.metrics].filter((layer) => layer !== undefined);
    if (layers.length === 0) return opts;
    return {
      ...opts,
      wrapCall: [...layers.map((l) => l.wrapCall), ...(opts.wrapCall ?? [])],
      wrapHandler: [...layers.map((l) => l.wrapHandler), ...(opts.wrapHandler ?? [])],
      wrapPublish: [...layers.map((l) => l.wrapPublish), ...(opts.wrapPublish ?? [])],
      wrapSubscriber: [...layers.map((l) => l.wrapSubscriber), ...(opts.wrapSubscriber ?? [])],
    };
  }
}
