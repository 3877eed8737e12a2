/**
 * What the dashboard server sends the page every scrape ("fleet" events on /api/events). Types only,
 * shared with the page's // @ts-check code (src/cli/web/), so it imports nothing with a runtime.
 */
import type { EndpointRates } from "./stats.ts";

export interface HealthPoint {
  /** Milliseconds since the epoch. */
  at: number;
  /** The node's GET /health status ("ok"), "unreachable", or "error". */
  status: string;
  latencyMs: number;
}

export interface NodeStats {
  id: string;
  service: string;
  address: string;
  /** "ok": /metrics was read; "absent": the node serves none (a go-micro node, or metrics off); "failing": it could not be read. */
  metrics: "ok" | "absent" | "failing";
  /** Oldest first, one point per scrape. */
  health: HealthPoint[];
}

export interface EndpointStats extends EndpointRates {
  /** Requests per second at each of the last scrapes, oldest first (the sparkline). */
  history: number[];
}

export interface TopicStats {
  topic: string;
  /** Events per second published, delivered to handlers, and failed (either way); all nodes together. */
  published: number;
  delivered: number;
  failed: number;
  /** Services that published to it (from their nodes' metrics). */
  publishers: string[];
  /** Services subscribed to it: the registry's subscriber endpoints, and nodes that had events delivered. */
  subscribers: string[];
  /** Subscriptions of the http broker in the registry (go-micro's micro.http.broker nodes). */
  brokerSubscriptions: number;
  /** The message types subscribers advertise for it, e.g. "student.Student". */
  messageTypes: string[];
  /** Events per second (published, or delivered where nobody's publishing is measured) at each of the last scrapes. */
  history: number[];
}

export interface FleetSnapshot {
  at: number;
  intervalMs: number;
  endpoints: EndpointStats[];
  topics: TopicStats[];
  nodes: NodeStats[];
}
