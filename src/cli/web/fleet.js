// @ts-check
// The fleet's live numbers (from the "fleet" events of /api/events): endpoint and topic tables with
// sparklines, and node health histories.
import { formatLatency, formatPercent, formatRate, h, sparkline } from "./dom.js";

/** @typedef {import("../fleet/snapshot.ts").FleetSnapshot} FleetSnapshot */
/** @typedef {import("../fleet/snapshot.ts").EndpointStats} EndpointStats */
/** @typedef {import("../fleet/snapshot.ts").TopicStats} TopicStats */
/** @typedef {import("../fleet/snapshot.ts").NodeStats} NodeStats */

/**
 * Names go-micro and tsmicro use for their own plumbing, hidden unless asked for: the http broker's
 * subscriptions and go-micro's runtime services. (go.micro.srv.* and go.micro.api.* are the
 * tutorial's naming for the user's own services, so they stay.)
 */
const INTERNAL = /^(go\.)?micro\.http\.broker$|^go\.micro\.(api|auth|bot|broker|config|debug|events|monitor|network|proxy|registry|router|runtime|store|tunnel|web)$/;

/** @param {string} service */
export const isInternal = (service) => INTERNAL.test(service);

/**
 * A cell holding a number, its raw value in data-value for scripts and tests.
 * @param {string} stat @param {number | null} value @param {string} text @param {Node} [extra]
 */
const statCell = (stat, value, text, extra) => h("td", { class: "num nowrap", "data-stat": stat, "data-value": value === null ? "" : String(value) }, text, extra);

/** @param {string} id @param {string[]} headings @param {HTMLElement[]} rows */
const statsTable = (id, headings, rows) =>
  h("table", { class: "stats", id }, h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))), h("tbody", {}, rows));

/**
 * @param {EndpointStats[]} endpoints
 * @param {number} intervalMs
 */
export function endpointTable(endpoints, intervalMs) {
  if (endpoints.length === 0) {
    return h("p", { class: "muted", id: "no-endpoint-stats" }, `No requests measured yet: rates appear once nodes serving /metrics have been read twice (every ${intervalMs / 1000} s).`);
  }
  return statsTable(
    "endpoint-stats",
    ["Service", "Endpoint", "Requests/s", "Errors", "p50", "p99", "In flight"],
    endpoints.map((e) =>
      h(
        "tr",
        { "data-endpoint-stats": `${e.service} ${e.endpoint}` },
        h("td", {}, h("a", { href: `#/service/${encodeURIComponent(e.service)}` }, e.service)),
        h("td", { class: "mono" }, e.endpoint),
        statCell("rate", e.rate, formatRate(e.rate), sparkline(e.history, `${e.endpoint} requests per second`)),
        statCell("error-ratio", e.errorRatio, formatPercent(e.errorRatio)),
        statCell("p50", e.p50, formatLatency(e.p50)),
        statCell("p99", e.p99, formatLatency(e.p99)),
        statCell("in-flight", e.inFlight, String(e.inFlight)),
      ),
    ),
  );
}

/** @param {string[]} names */
const serviceLinks = (names) =>
  names.length === 0 ? h("span", { class: "muted" }, "–") : h("span", {}, names.flatMap((n, i) => [i > 0 ? ", " : "", h("a", { href: `#/service/${encodeURIComponent(n)}` }, n)]));

/** @param {TopicStats[]} topics */
export function topicTable(topics) {
  if (topics.length === 0) return h("p", { class: "muted", id: "no-topics" }, "No topics yet: they appear when a service subscribes or publishes.");
  return statsTable(
    "topic-stats",
    ["Topic", "Publishers", "Subscribers", "Published/s", "Delivered/s", "Failed/s", "Message"],
    topics.map((t) =>
      h(
        "tr",
        { "data-topic": t.topic },
        h("td", { class: "mono nowrap" }, h("a", { href: `#/topic/${encodeURIComponent(t.topic)}` }, t.topic)),
        h("td", { "data-stat": "publishers" }, serviceLinks(t.publishers)),
        h(
          "td",
          { "data-stat": "subscribers" },
          serviceLinks(t.subscribers),
          t.brokerSubscriptions ? h("small", { class: "muted", title: "subscriptions of the http broker in the registry (micro.http.broker)" }, ` · ${t.brokerSubscriptions} via http broker`) : undefined,
        ),
        statCell("published", t.published, formatRate(t.published), sparkline(t.history, `${t.topic} events per second`)),
        statCell("delivered", t.delivered, formatRate(t.delivered)),
        statCell("failed", t.failed, formatRate(t.failed)),
        h("td", { class: "mono nowrap" }, t.messageTypes.join(", ") || "–"),
      ),
    ),
  );
}

/**
 * One square per scrape, oldest first: green ok, red otherwise; the title says when and how fast.
 * @param {NodeStats | undefined} node
 * @param {string} id
 */
export function healthStrip(node, id) {
  const points = node?.health ?? [];
  return h(
    "span",
    { class: "health-strip", "data-health-history": id, "data-metrics": node?.metrics ?? "", title: node ? `metrics: ${node.metrics}` : "not read yet" },
    points.map((p) =>
      h("i", {
        class: p.status === "ok" ? "ok" : p.status === "unknown" ? "unknown" : "bad",
        "data-status": p.status,
        title: `${new Date(p.at).toLocaleTimeString()} ${p.status} · ${p.latencyMs} ms`,
      }),
    ),
  );
}

/**
 * "12.5 req/s · 2% errors · p50 3.1 ms · p99 8 ms" for an endpoint card.
 * @param {EndpointStats | undefined} stats
 */
export function endpointSummary(stats) {
  if (!stats) return h("span", { class: "endpoint-stats muted" }, "no traffic measured");
  return h(
    "span",
    { class: "endpoint-stats", "data-rate": String(stats.rate) },
    `${formatRate(stats.rate)} req/s · ${formatPercent(stats.errorRatio)} errors · p50 ${formatLatency(stats.p50)} · p99 ${formatLatency(stats.p99)}`,
  );
}
