/**
 * Rates, error ratios and latency quantiles from successive scrapes of the nodes' /metrics, by the
 * metric names of CONTRACT.md (micro_server_*, micro_broker_*). Pure functions: the scraper feeds them.
 */
import type { Labels, Sample } from "./exposition.ts";

export interface Scrape {
  /** Milliseconds since the epoch. */
  at: number;
  samples: Sample[];
}

/** One node's growth over a window: every series' increase, and the newest values (for gauges). */
export interface NodeWindow {
  seconds: number;
  increases: Sample[];
  latest: Sample[];
}

const seriesKey = (s: Sample) => `${s.name}${JSON.stringify(Object.entries(s.labels).sort(([a], [b]) => a.localeCompare(b)))}`;

/**
 * How much each series grew from older to newer (two scrapes of one node). A series that went down
 * was reset by a restart: its growth is its new value. A series that older lacks was 0 then
 * (client libraries create labelled series on first use).
 */
export function nodeWindow(older: Scrape, newer: Scrape): NodeWindow {
  const before = new Map(older.samples.map((s) => [seriesKey(s), s.value]));
  const increases = newer.samples.map((s) => {
    const previous = before.get(seriesKey(s)) ?? 0;
    return { ...s, value: s.value >= previous ? s.value - previous : s.value };
  });
  return { seconds: Math.max((newer.at - older.at) / 1000, 0.001), increases, latest: newer.samples };
}

export interface Bucket {
  /** Upper bound in seconds; Infinity for the +Inf bucket. */
  le: number;
  /** Cumulative count, as exposed. */
  count: number;
}

/** Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank; null without observations. */
export function quantile(q: number, buckets: Bucket[]): number | null {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted.at(-1)?.count ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lowerLe = 0;
  let lowerCount = 0;
  for (const { le, count } of sorted) {
    if (count >= rank) {
      // The +Inf bucket has no upper bound: the best answer is the highest finite one.
      if (le === Infinity) return lowerLe;
      return count === lowerCount ? le : lowerLe + ((le - lowerLe) * (rank - lowerCount)) / (count - lowerCount);
    }
    lowerLe = le;
    lowerCount = count;
  }
  return lowerLe;
}

export interface EndpointRates {
  service: string;
  endpoint: string;
  /** Requests per second, all nodes together. */
  rate: number;
  /** Failed requests per second (any code but 200). */
  errorRate: number;
  /** Failed share of the window's requests, 0..1; 0 without requests. */
  errorRatio: number;
  /** Seconds; null without requests in the window. */
  p50: number | null;
  p99: number | null;
  inFlight: number;
}

const SERVER_REQUESTS = "micro_server_requests_total";
const SERVER_DURATION_BUCKET = "micro_server_request_duration_seconds_bucket";
const SERVER_IN_FLIGHT = "micro_server_requests_in_flight";

/** Grouping key of the series of one service endpoint. */
const endpointKey = (labels: Labels) => (labels.service && labels.endpoint ? JSON.stringify([labels.service, labels.endpoint]) : undefined);

/** Per service endpoint (the server side of every node), over the nodes' windows. */
export function endpointRates(windows: NodeWindow[]): EndpointRates[] {
  const byKey = new Map<string, { rate: number; errorRate: number; requests: number; errors: number; buckets: Map<number, number>; inFlight: number }>();
  const entry = (key: string) => {
    let e = byKey.get(key);
    if (!e) byKey.set(key, (e = { rate: 0, errorRate: 0, requests: 0, errors: 0, buckets: new Map(), inFlight: 0 }));
    return e;
  };
  for (const w of windows) {
    for (const s of w.increases) {
      const key = endpointKey(s.labels);
      if (!key) continue;
      if (s.name === SERVER_REQUESTS) {
        const e = entry(key);
        const failed = s.labels.code !== "200";
        e.requests += s.value;
        e.rate += s.value / w.seconds;
        if (failed) {
          e.errors += s.value;
          e.errorRate += s.value / w.seconds;
        }
      } else if (s.name === SERVER_DURATION_BUCKET) {
        const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
        const buckets = entry(key).buckets;
        buckets.set(le, (buckets.get(le) ?? 0) + s.value);
      }
    }
    for (const s of w.latest) {
      const key = endpointKey(s.labels);
      if (key && s.name === SERVER_IN_FLIGHT) entry(key).inFlight += s.value;
    }
  }
  return [...byKey].map(([key, e]) => {
    const [service, endpoint] = JSON.parse(key) as [string, string];
    const buckets = [...e.buckets].map(([le, count]) => ({ le, count }));
    return {
      service,
      endpoint,
      rate: e.rate,
      errorRate: e.errorRate,
      errorRatio: e.requests > 0 ? e.errors / e.requests : 0,
      p50: quantile(0.5, buckets),
      p99: quantile(0.99, buckets),
      inFlight: e.inFlight,
    };
  });
}

export interface TopicRates {
  topic: string;
  /** Events per second published, and delivered to handlers, all nodes together. */
  published: number;
  delivered: number;
  /** Failed publishes and failed deliveries per second. */
  failed: number;
  /** The services (node_service) whose nodes ever published to it, or had it delivered. */
  publishers: string[];
  receivers: string[];
}

const TOPIC_METRICS: Record<string, "published" | "delivered" | "failed"> = {
  micro_broker_published_total: "published",
  micro_broker_delivered_total: "delivered",
  micro_broker_publish_errors_total: "failed",
  micro_broker_delivery_errors_total: "failed",
};

export function topicRates(windows: NodeWindow[]): TopicRates[] {
  const byTopic = new Map<string, { published: number; delivered: number; failed: number; publishers: Set<string>; receivers: Set<string> }>();
  const entry = (topic: string) => {
    let e = byTopic.get(topic);
    if (!e) byTopic.set(topic, (e = { published: 0, delivered: 0, failed: 0, publishers: new Set(), receivers: new Set() }));
    return e;
  };
  for (const w of windows) {
    for (const s of w.increases) {
      const kind = TOPIC_METRICS[s.name];
      if (kind && s.labels.topic) entry(s.labels.topic)[kind] += s.value / w.seconds;
    }
    for (const s of w.latest) {
      const { topic, node_service: service } = s.labels;
      if (!topic || !service || s.value <= 0) continue;
      if (s.name === "micro_broker_published_total") entry(topic).publishers.add(service);
      if (s.name === "micro_broker_delivered_total") entry(topic).receivers.add(service);
    }
  }
  return [...byTopic].map(([topic, e]) => ({
    topic,
    published: e.published,
    delivered: e.delivered,
    failed: e.failed,
    publishers: [...e.publishers].sort(),
    receivers: [...e.receivers].sort(),
  }));
}
