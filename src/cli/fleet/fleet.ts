/**
 * The dashboard's view of the fleet over time: every few seconds it reads each node's GET /health
 * and GET /metrics (the Prometheus text of CONTRACT.md), keeps a short window of scrapes per node,
 * and publishes a FleetSnapshot: per endpoint rates, errors and latency, per topic event rates with
 * publishers and subscribers, and each node's health history.
 */
import { HTTP_BROKER_SERVICE } from "../../broker/http.ts";
import { joinHostPort, splitHostPort } from "../../address.ts";
import type { Service } from "../../registry/registry.ts";
import type { Catalog } from "../catalog.ts";
import { parseExposition } from "./exposition.ts";
import type { EndpointStats, FleetSnapshot, HealthPoint, NodeStats, TopicStats } from "./snapshot.ts";
import { endpointRates, nodeWindow, topicRates, type Scrape } from "./stats.ts";

/** Rates are taken over the last few scrapes, so one slow scrape does not make a spike. */
const WINDOW_SCRAPES = 4;
/** Points kept for sparklines and health histories. */
const HISTORY_POINTS = 40;
/** A node slower than this to answer /health or /metrics counts as unreachable for that round. */
const MIN_PROBE_TIMEOUT_MS = 1000;

interface NodeState {
  service: string;
  address: string;
  scrapes: Scrape[];
  metrics: NodeStats["metrics"];
  health: HealthPoint[];
}

export type FleetListener = (snapshot: FleetSnapshot) => void;

export class Fleet {
  private readonly nodes = new Map<string, NodeState>();
  private readonly histories = new Map<string, number[]>();
  /** The series recorded this round: the others (endpoints and topics gone) are dropped after it. */
  private recorded = new Set<string>();
  private readonly listeners = new Set<FleetListener>();
  private last?: FleetSnapshot;
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    /** Where the nodes are: the dashboard's live Catalog of the registry. */
    private readonly catalog: Pick<Catalog, "snapshot">,
    readonly intervalMs: number,
  ) {}

  /** Scrapes now and then every intervalMs (never two rounds at once) until stop(). */
  start(): void {
    const round = () =>
      void this.scrape().finally(() => {
        if (!this.stopped) this.timer = setTimeout(round, this.intervalMs);
      });
    round();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.listeners.clear();
  }

  /** The newest snapshot, if a round has finished. */
  latest(): FleetSnapshot | undefined {
    return this.last;
  }

  /** Calls listener after every round; returns the function that stops it. */
  onSnapshot(listener: FleetListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async scrape(): Promise<void> {
    const services = this.catalog.snapshot();
    // The http broker's subscriptions are nodes of the registry but not services: nothing to scrape.
    const current = services.filter((s) => s.name !== HTTP_BROKER_SERVICE).flatMap((s) => s.nodes.map((node) => ({ service: s.name, node })));
    const ids = new Set(current.map(({ node }) => node.id));
    for (const id of this.nodes.keys()) if (!ids.has(id)) this.nodes.delete(id);
    await Promise.all(
      current.map(async ({ service, node }) => {
        let state = this.nodes.get(node.id);
        if (!state) this.nodes.set(node.id, (state = { service, address: node.address, scrapes: [], metrics: "absent", health: [] }));
        await this.probe(state, Math.max(this.intervalMs, MIN_PROBE_TIMEOUT_MS));
      }),
    );
    if (this.stopped) return;
    this.last = this.snapshot(services);
    for (const listener of this.listeners) listener(this.last);
  }

  /** One node's health and metrics, each bounded by the interval. */
  private async probe(state: NodeState, timeoutMs: number): Promise<void> {
    const { host, port } = splitHostPort(state.address);
    const base = `http://${joinHostPort(host, port ?? 80)}`;
    const started = performance.now();
    const [health, metrics] = await Promise.allSettled([
      fetch(`${base}/health`, { signal: AbortSignal.timeout(timeoutMs) }).then(async (res) => ({
        code: res.status,
        body: res.ok ? ((await res.json()) as { status?: unknown }) : {},
      })),
      fetch(`${base}/metrics`, { signal: AbortSignal.timeout(timeoutMs) }).then(async (res) => ({ status: res.status, text: await res.text() })),
    ]);
    const latencyMs = Math.round(performance.now() - started);
    // go-micro nodes answer their HTTP transport but have no /health: "unknown", not a failure.
    const status =
      health.status === "rejected" ? "unreachable" : health.value.code === 200 ? String(health.value.body.status ?? "ok") : health.value.code === 404 ? "unknown" : "error";
    push(state.health, { at: Date.now(), status, latencyMs });

    // A node without metrics (a go-micro node, an older tsmicro) refuses the GET: 404, or 405 from its RPC handler.
    if (metrics.status === "fulfilled" && (metrics.value.status === 404 || metrics.value.status === 405)) {
      state.metrics = "absent";
      return;
    }
    try {
      if (metrics.status === "rejected") throw metrics.reason;
      if (metrics.value.status !== 200) throw new Error(`HTTP ${metrics.value.status}`);
      state.scrapes.push({ at: Date.now(), samples: parseExposition(metrics.value.text) });
      if (state.scrapes.length > WINDOW_SCRAPES) state.scrapes.shift();
      state.metrics = "ok";
    } catch {
      state.metrics = "failing";
    }
  }

  private snapshot(services: Service[]): FleetSnapshot {
    this.recorded = new Set();
    const windows = [...this.nodes.values()].filter((n) => n.scrapes.length >= 2).map((n) => nodeWindow(n.scrapes[0]!, n.scrapes.at(-1)!));
    const endpoints: EndpointStats[] = endpointRates(windows)
      .sort((a, b) => a.service.localeCompare(b.service) || a.endpoint.localeCompare(b.endpoint))
      .map((rates) => ({ ...rates, history: this.record(`endpoint ${rates.service} ${rates.endpoint}`, rates.rate) }));
    const topics = this.topics(services, topicRates(windows));
    for (const key of this.histories.keys()) if (!this.recorded.has(key)) this.histories.delete(key);
    return {
      at: Date.now(),
      intervalMs: this.intervalMs,
      endpoints,
      topics,
      nodes: [...this.nodes].map(([id, n]) => ({ id, service: n.service, address: n.address, metrics: n.metrics, health: [...n.health] })),
    };
  }

  /** Topics from the registry (subscriber endpoints, http broker subscriptions) and from the nodes' metrics. */
  private topics(services: Service[], measured: ReturnType<typeof topicRates>): TopicStats[] {
    const topics = new Map<string, Omit<TopicStats, "history">>();
    const entry = (topic: string) => {
      let t = topics.get(topic);
      if (!t) topics.set(topic, (t = { topic, published: 0, delivered: 0, failed: 0, publishers: [], subscribers: [], brokerSubscriptions: 0, messageTypes: [] }));
      return t;
    };
    const addOnce = (list: string[], item: string | undefined) => item && !list.includes(item) && list.push(item);
    for (const s of services) {
      if (s.name === HTTP_BROKER_SERVICE) {
        for (const node of s.nodes) if (node.metadata?.topic) entry(node.metadata.topic).brokerSubscriptions++;
        continue;
      }
      for (const e of s.endpoints ?? []) {
        if (e.metadata?.subscriber !== "true" || !e.metadata.topic) continue;
        const t = entry(e.metadata.topic);
        addOnce(t.subscribers, s.name);
        addOnce(t.messageTypes, e.request?.type);
      }
    }
    for (const m of measured) {
      const t = entry(m.topic);
      Object.assign(t, { published: m.published, delivered: m.delivered, failed: m.failed });
      m.publishers.forEach((p) => addOnce(t.publishers, p));
      m.receivers.forEach((r) => addOnce(t.subscribers, r));
    }
    return [...topics.values()]
      .sort((a, b) => a.topic.localeCompare(b.topic))
      .map((t) => ({ ...t, subscribers: t.subscribers.sort(), publishers: t.publishers.sort(), history: this.record(`topic ${t.topic}`, t.published || t.delivered) }));
  }

  /** Appends a point to a sparkline series and returns a copy of it. */
  private record(key: string, value: number): number[] {
    let series = this.histories.get(key);
    if (!series) this.histories.set(key, (series = []));
    push(series, value);
    this.recorded.add(key);
    return [...series];
  }
}

function push<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > HISTORY_POINTS) list.shift();
}
