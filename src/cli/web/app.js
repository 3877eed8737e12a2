// @ts-check
// The tsmicro dashboard: browser JavaScript checked by TypeScript, served as written.
// Services and nodes come live from /api/events (server-sent events fed by the registry's watch),
// with "fleet" events carrying the rates, latencies, topics and node health the server reads from
// the nodes; the service view calls endpoints through /api/call; the topic view tails /api/topics/<topic>.
import { $, h, keyValueChips, plural, pretty } from "./dom.js";
import { endpointSummary, endpointTable, healthStrip, isInternal, topicTable } from "./fleet.js";

/** @typedef {import("../../registry/registry.ts").Service} Service */
/** @typedef {import("../../registry/registry.ts").Endpoint} Endpoint */
/** @typedef {import("../../registry/registry.ts").Value} Value */
/** @typedef {import("./fleet.js").FleetSnapshot} FleetSnapshot */
/**
 * @typedef {object} View
 * @property {() => void} close
 * @property {(name: string) => void} [serviceChanged]
 * @property {() => void} [fleetChanged]
 */
/**
 * An event as /api/topics sends it (ShownEvent of src/cli/inspect.ts).
 * @typedef {{topic: string, header: Record<string, string>, contentType: string, messageType?: string, encoding: string, body: unknown, size: number, receivedAt: string}} ShownEvent
 */

const MAX_TAILED_EVENTS = 200;

/** name → versions (each a go-micro Service with its nodes) */
const services = new Map(/** @type {Array<[string, Service[]]>} */ ([]));
/** @type {string[]} */
const tailedTopics = [];
/** @type {FleetSnapshot | undefined} */
let fleet;
/** False until the first snapshot: before it, a service missing from the map is not known to be gone. */
let synced = false;
/** @type {View} */
let openView = { close() {} };

/** @param {Service[]} versions */
const nodesOf = (versions) => versions.flatMap((s) => s.nodes.map((node) => ({ ...node, version: s.version })));
const showInternal = () => /** @type {HTMLInputElement} */ ($("show-internal")).checked;
/** @param {string} name */
const shown = (name) => showInternal() || !isInternal(name);
/** go-micro advertises a subscription as an endpoint with metadata subscriber=true. @param {Endpoint} e */
const isSubscriber = (e) => e.metadata?.subscriber === "true";

// ---- live services and fleet numbers ----

function connectEvents() {
  const source = new EventSource("/api/events");
  const connection = $("connection");
  source.addEventListener("open", () => {
    connection.dataset.state = "live";
    connection.textContent = "live";
  });
  source.addEventListener("error", () => {
    connection.dataset.state = "down";
    connection.textContent = "reconnecting…";
  });
  source.addEventListener("snapshot", (e) => {
    const snapshot = /** @type {{registry: string, broker: string, services: Service[]}} */ (JSON.parse(e.data));
    $("plugins").textContent = `registry ${snapshot.registry} · broker ${snapshot.broker}`;
    const before = [...services.keys()];
    services.clear();
    for (const s of snapshot.services) services.set(s.name, [...(services.get(s.name) ?? []), s]);
    synced = true;
    renderSidebar();
    // Also after a reconnect: the open view is updated in place, keeping what was typed into it.
    for (const name of new Set([...before, ...services.keys()])) openView.serviceChanged?.(name);
  });
  source.addEventListener("service", (e) => {
    const { name, versions } = /** @type {{name: string, versions: Service[]}} */ (JSON.parse(e.data));
    if (versions.length === 0) services.delete(name);
    else services.set(name, versions);
    renderSidebar();
    openView.serviceChanged?.(name);
  });
  source.addEventListener("fleet", (e) => {
    fleet = /** @type {FleetSnapshot} */ (JSON.parse(e.data));
    renderSidebar();
    openView.fleetChanged?.();
  });
}

/** The topics to list: discovered by the server, of services shown. */
function visibleTopics() {
  return (fleet?.topics ?? []).filter((t) => showInternal() || [...t.subscribers, ...t.publishers].some(shown) || t.subscribers.length + t.publishers.length === 0);
}

function renderSidebar() {
  const filter = /** @type {HTMLInputElement} */ ($("service-filter")).value.trim().toLowerCase();
  const visible = [...services.keys()].sort().filter(shown);
  const names = visible.filter((name) => name.toLowerCase().includes(filter));
  const current = decodeURIComponent(location.hash.match(/^#\/service\/(.+)$/)?.[1] ?? "");
  $("service-list").replaceChildren(
    ...names.map((name) => {
      const versions = services.get(name) ?? [];
      const nodes = nodesOf(versions).length;
      return h(
        "li",
        {},
        h(
          "a",
          { href: `#/service/${encodeURIComponent(name)}`, "data-service": name, "aria-current": name === current ? "page" : undefined },
          h("span", { class: "service-name" }, name),
          h("span", { class: "service-meta" }, `${versions.map((s) => s.version).join(", ")} · ${plural(nodes, "node")}`),
        ),
      );
    }),
  );
  const hidden = services.size - visible.length;
  $("service-count").textContent = visible.length ? String(visible.length) : "";
  $("internal-count").textContent = hidden > 0 ? `(${hidden} hidden)` : "";
  $("no-services").hidden = visible.length > 0;
  const currentTopic = decodeURIComponent(location.hash.match(/^#\/topic\/(.+)$/)?.[1] ?? "");
  const topics = [...new Set([...visibleTopics().map((t) => t.topic), ...tailedTopics])].sort();
  $("topic-list").replaceChildren(
    ...topics.map((t) =>
      h("li", {}, h("a", { href: `#/topic/${encodeURIComponent(t)}`, "data-topic-link": t, "aria-current": t === currentTopic ? "page" : undefined }, t)),
    ),
  );
}

// ---- routing: #/service/<name>, #/topic/<topic>, otherwise the overview ----

function route() {
  openView.close();
  const [, kind, arg] = location.hash.match(/^#\/(service|topic)\/(.+)$/) ?? [];
  const main = $("main");
  if (kind === "service" && arg) openView = serviceView(main, decodeURIComponent(arg));
  else if (kind === "topic" && arg) openView = topicView(main, decodeURIComponent(arg));
  else openView = overview(main);
  renderSidebar();
}

/** @param {HTMLElement} main @returns {View} */
function overview(main) {
  const endpoints = h("div", { class: "fleet-endpoints" });
  const topics = h("div", { class: "fleet-topics" });
  const rows = h("tbody");
  const empty = h("p", { class: "muted" }, "No services in the registry yet. Start one and it appears here.");
  const interval = h("span");
  function renderFleet() {
    interval.textContent = fleet ? `read every ${fleet.intervalMs / 1000} s` : "waiting for the first reading…";
    const visible = (fleet?.endpoints ?? []).filter((e) => shown(e.service));
    endpoints.replaceChildren(endpointTable(visible, fleet?.intervalMs ?? 2000));
    topics.replaceChildren(topicTable(visibleTopics()));
  }
  function render() {
    const names = [...services.keys()].sort().filter(shown);
    empty.hidden = names.length > 0;
    rows.replaceChildren(
      ...names.flatMap((name) =>
        (services.get(name) ?? []).map((s) =>
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/service/${encodeURIComponent(name)}` }, name)),
            h("td", {}, s.version),
            h("td", {}, String(s.nodes.length)),
            h("td", { class: "mono" }, (s.endpoints ?? []).filter((e) => !isSubscriber(e)).map((e) => e.name).join(", ") || "–"),
          ),
        ),
      ),
    );
  }
  main.replaceChildren(
    h("h1", {}, "Fleet"),
    h("p", { class: "muted" }, "Live from the registry and from each node's /metrics (", interval, "). Pick a service to see its nodes and call its endpoints, or a topic to tail its events."),
    h("h2", {}, "Endpoints"),
    endpoints,
    h("h2", {}, "Topics"),
    topics,
    h("h2", {}, "Services"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Service", "Version", "Nodes", "Endpoints"].map((t) => h("th", {}, t)))), rows),
    empty,
  );
  render();
  renderFleet();
  return {
    close() {},
    serviceChanged: render,
    fleetChanged() {
      render();
      renderFleet();
    },
  };
}

// ---- service view ----

/** @param {HTMLElement} main @param {string} name @returns {View} */
function serviceView(main, name) {
  const headline = h("div", { class: "headline" });
  const nodeRows = h("tbody");
  const endpointList = h("div", { class: "endpoints" });
  const subscriptions = h("div", { class: "subscriptions" });
  const gone = h("p", { class: "notice", hidden: true }, `${name} has no node in the registry any more.`);
  const checkButton = h("button", { type: "button", class: "secondary", onclick: () => checkHealth() }, "Check health");
  let shownEndpoints = "";

  main.replaceChildren(
    h("h1", {}, name),
    headline,
    gone,
    h("div", { class: "section-title" }, h("h2", {}, "Nodes"), checkButton),
    h(
      "table",
      { class: "nodes" },
      h("thead", {}, h("tr", {}, ["Node", "Address", "Version", "Metadata", "Health", "History"].map((t) => h("th", {}, t)))),
      nodeRows,
    ),
    subscriptions,
    h("h2", {}, "Endpoints"),
    endpointList,
  );

  async function checkHealth() {
    const res = await fetch(`/api/health/${encodeURIComponent(name)}`);
    if (!res.ok) return;
    for (const node of /** @type {Array<{id: string, status: string, latencyMs: number, error?: {detail: string}}>} */ (await res.json())) {
      const cell = /** @type {HTMLElement | null} */ (nodeRows.querySelector(`[data-health="${CSS.escape(node.id)}"]`));
      if (!cell) continue;
      cell.dataset.status = node.status;
      cell.textContent = node.status === "ok" ? `ok · ${node.latencyMs} ms` : `${node.status}${node.error ? `: ${node.error.detail}` : ""}`;
    }
  }

  function renderFleet() {
    for (const cell of nodeRows.querySelectorAll("[data-history-of]")) {
      const id = /** @type {HTMLElement} */ (cell).dataset.historyOf ?? "";
      cell.replaceChildren(healthStrip(fleet?.nodes.find((n) => n.id === id), id));
    }
    for (const card of endpointList.querySelectorAll("[data-endpoint]")) {
      const endpoint = /** @type {HTMLElement} */ (card).dataset.endpoint;
      card.querySelector(".endpoint-stats")?.replaceWith(endpointSummary(fleet?.endpoints.find((e) => e.service === name && e.endpoint === endpoint)));
    }
  }

  function update() {
    const versions = services.get(name) ?? [];
    gone.hidden = versions.length > 0 || !synced;
    const metadata = versions[0]?.metadata ?? {};
    headline.replaceChildren(...versions.map((s) => h("span", { class: "badge" }, s.version)), Object.keys(metadata).length ? keyValueChips(metadata) : "");
    nodeRows.replaceChildren(
      ...nodesOf(versions).map((n) =>
        h(
          "tr",
          { "data-node": n.id },
          h("td", { class: "mono" }, n.id),
          h("td", { class: "mono nowrap" }, n.address),
          h("td", {}, n.version),
          h("td", {}, keyValueChips(n.metadata)),
          h("td", { class: "health nowrap", "data-health": n.id }, "…"),
          h("td", { "data-history-of": n.id }),
        ),
      ),
    );
    const all = versions[0]?.endpoints ?? []; // the service's own first, Debug.* last (sorted by the server)
    const subscribed = all.filter(isSubscriber);
    subscriptions.replaceChildren(
      ...(subscribed.length
        ? [
            h("h2", {}, "Subscribes to"),
            h(
              "ul",
              { class: "subscribed" },
              subscribed.map((e) =>
                h("li", {}, h("a", { class: "mono", href: `#/topic/${encodeURIComponent(e.metadata?.topic ?? "")}` }, e.metadata?.topic ?? ""), e.request ? h("span", { class: "muted" }, ` ${e.request.type}`) : undefined),
              ),
            ),
          ]
        : []),
    );
    // Endpoint forms are rebuilt only when the endpoints change, so typing is never lost to a node update.
    const endpoints = all.filter((e) => !isSubscriber(e));
    const key = JSON.stringify(endpoints);
    if (key !== shownEndpoints && endpoints.length > 0) {
      shownEndpoints = key;
      // Few endpoints: all the service's own are open; many: the first. Debug.* stays folded.
      /** @param {Endpoint} e @param {number} i */
      const open = (e, i) => !e.name.startsWith("Debug.") && (i === 0 || endpoints.length <= 4);
      endpointList.replaceChildren(...endpoints.map((e, i) => endpointCard(name, e, open(e, i))));
    }
    renderFleet();
    if (versions.length > 0) checkHealth();
  }

  update();
  return {
    close() {},
    serviceChanged(changed) {
      if (changed === name) update();
    },
    fleetChanged: renderFleet,
  };
}

// ---- endpoint forms: one input per field of the request shape, all writing into the request JSON ----

const NUMBER_TYPE = /^(u?int(8|16|32|64)?|s?fixed(32|64)|sint(32|64)|float(32|64)?|double|number)$/i;
const LIST_TYPE = /^(\[\]|repeated\b|map\b|map\[|map<)/i;

/** @param {Value} field @returns {"json" | "bool" | "number" | "text"} */
function fieldKind(field) {
  if (field.values?.length || LIST_TYPE.test(field.type)) return "json";
  if (/^bool(ean)?$/i.test(field.type)) return "bool";
  if (NUMBER_TYPE.test(field.type)) return "number";
  return "text";
}

/** A JSON template of a shape, for fields that take JSON (nested messages, lists, maps). @param {Value} field @returns {unknown} */
function template(field) {
  if (field.values?.length) return Object.fromEntries(field.values.map((f) => [f.name, template(f)]));
  if (LIST_TYPE.test(field.type)) return field.type.startsWith("map") ? {} : [];
  return { bool: false, number: 0, text: "", json: null }[fieldKind(field)];
}

/** @param {Value} field @param {() => void} onChange @returns {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} */
function fieldInput(field, onChange) {
  const kind = fieldKind(field);
  const common = { name: field.name, "data-field": field.name, "aria-label": field.name };
  if (kind === "bool") {
    return /** @type {HTMLSelectElement} */ (
      h("select", { ...common, onchange: onChange }, h("option", { value: "" }, "(unset)"), h("option", {}, "true"), h("option", {}, "false"))
    );
  }
  if (kind === "json") return /** @type {HTMLTextAreaElement} */ (h("textarea", { ...common, rows: 3, placeholder: JSON.stringify(template(field)), oninput: onChange }));
  return /** @type {HTMLInputElement} */ (
    h("input", { ...common, type: kind === "number" ? "number" : "text", step: kind === "number" ? "any" : undefined, placeholder: field.type, oninput: onChange })
  );
}

/** The field's value as the request wants it; undefined leaves the field out. @param {{value: string}} input @param {Value} field */
function fieldValue(input, field) {
  const raw = input.value;
  if (raw === "") return undefined;
  switch (fieldKind(field)) {
    case "bool":
      return raw === "true";
    case "number":
      return Number(raw);
    case "json":
      return JSON.parse(raw);
    default:
      return raw;
  }
}

/** @param {Value | null | undefined} value @returns {string} */
function shapeText(value) {
  if (!value) return "–";
  if (!value.values?.length) return value.type;
  return `${value.type} { ${value.values.map((f) => `${f.name}: ${f.values?.length ? shapeText(f) : f.type}`).join(", ")} }`;
}

/** @param {string} serviceName @param {Endpoint} endpoint @param {boolean} open */
function endpointCard(serviceName, endpoint, open) {
  const fields = endpoint.request?.values ?? [];
  const requestJson = /** @type {HTMLTextAreaElement} */ (
    h("textarea", { class: "request-json", name: "request", rows: Math.min(12, Math.max(4, fields.length + 2)), spellcheck: "false", "aria-label": "Request JSON" })
  );
  requestJson.value = "{}";
  const result = h("div", { class: "result", "aria-live": "polite" });
  const callButton = /** @type {HTMLButtonElement} */ (h("button", { type: "submit" }, "Call"));

  /** @param {Value} field @param {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} input */
  function fieldChanged(field, input) {
    /** @type {Record<string, unknown>} */
    let request;
    try {
      request = JSON.parse(requestJson.value);
    } catch {
      request = {};
    }
    if (typeof request !== "object" || request === null || Array.isArray(request)) request = {};
    try {
      const value = fieldValue(input, field);
      if (value === undefined) delete request[field.name];
      else request[field.name] = value;
      input.removeAttribute("aria-invalid");
    } catch {
      input.setAttribute("aria-invalid", "true"); // JSON still being typed
      return;
    }
    requestJson.value = pretty(request);
  }

  /** @param {Event} e */
  async function call(e) {
    e.preventDefault();
    let request;
    try {
      request = JSON.parse(requestJson.value || "{}");
    } catch (err) {
      showResult(result, "error", "Request is not valid JSON", /** @type {Error} */ (err).message);
      return;
    }
    callButton.disabled = true;
    const started = performance.now();
    try {
      const res = await fetch("/api/call", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ service: serviceName, endpoint: endpoint.name, request }),
      });
      const body = await res.json();
      const took = `${Math.round(performance.now() - started)} ms`;
      if (res.ok) showResult(result, "ok", `${res.status} OK · ${took}`, pretty(body));
      else showResult(result, "error", `${body.code ?? res.status} ${body.status ?? ""} · ${took}`, pretty(body));
    } catch (err) {
      showResult(result, "error", "The dashboard did not answer", /** @type {Error} */ (err).message);
    } finally {
      callButton.disabled = false;
    }
  }

  const inputs = fields.map((field) => {
    const input = fieldInput(field, () => fieldChanged(field, input));
    return h("label", { class: "field" }, h("span", { class: "field-name" }, field.name, h("small", {}, field.type)), input);
  });

  return h(
    "details",
    { class: "endpoint", "data-endpoint": endpoint.name, open },
    h(
      "summary",
      {},
      h("span", { class: "endpoint-name" }, endpoint.name),
      h("span", { class: "endpoint-shape" }, `${endpoint.request?.type ?? "any JSON"} → ${endpoint.response?.type ?? "any JSON"}`),
      endpointSummary(undefined),
    ),
    h(
      "div",
      { class: "endpoint-body" },
      h(
        "form",
        { class: "call-form", onsubmit: call },
        inputs.length ? h("div", { class: "fields" }, inputs) : h("p", { class: "muted" }, "No request shape advertised: write the request as JSON."),
        h("label", { class: "field" }, h("span", { class: "field-name" }, "Request JSON"), requestJson),
        h("div", { class: "actions" }, callButton),
      ),
      h(
        "div",
        { class: "shapes" },
        h("h3", {}, "Request"),
        h("code", {}, shapeText(endpoint.request)),
        h("h3", {}, "Response"),
        h("code", {}, shapeText(endpoint.response)),
        result,
      ),
    ),
  );
}

/** @param {HTMLElement} container @param {"ok" | "error"} kind @param {string} title @param {string} text */
function showResult(container, kind, title, text) {
  container.replaceChildren(h("div", { class: `result-title ${kind}` }, title), h("pre", { class: "result-body" }, text));
}

// ---- topic view: who publishes and subscribes, tail over SSE, publish through /api/publish ----

/** @param {string} topic */
function rememberTopic(topic) {
  if (!tailedTopics.includes(topic)) tailedTopics.push(topic);
}

/** @param {HTMLElement} main @param {string} topic @returns {View} */
function topicView(main, topic) {
  rememberTopic(topic);
  const status = h("span", { class: "tail-status", "data-state": "connecting" }, "subscribing…");
  const stats = h("div", { class: "topic-stats" });
  const list = h("ol", { class: "events" });
  const empty = h("p", { class: "muted" }, "No events yet.");
  const message = /** @type {HTMLTextAreaElement} */ (h("textarea", { name: "message", rows: 4, spellcheck: "false", "aria-label": "Message JSON" }));
  message.value = "{}";
  const header = /** @type {HTMLInputElement} */ (h("input", { name: "header", placeholder: "name=davie, other=value", "aria-label": "Headers" }));
  const publishResult = h("span", { class: "publish-result", "aria-live": "polite" });

  function renderFleet() {
    const t = fleet?.topics.find((x) => x.topic === topic);
    stats.replaceChildren(t ? topicTable([t]) : h("p", { class: "muted" }, "No service advertises or measures this topic yet."));
  }

  /** @param {Event} e */
  async function publish(e) {
    e.preventDefault();
    publishResult.textContent = "";
    try {
      const headers = Object.fromEntries(
        header.value
          .split(",")
          .filter((pair) => pair.includes("="))
          .map((pair) => [pair.slice(0, pair.indexOf("=")).trim(), pair.slice(pair.indexOf("=") + 1).trim()]),
      );
      const res = await fetch("/api/publish", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ topic, message: JSON.parse(message.value), header: headers }),
      });
      const body = await res.json();
      publishResult.className = `publish-result ${res.ok ? "ok" : "error"}`;
      publishResult.textContent = res.ok ? `published via ${body.broker}` : body.detail;
    } catch (err) {
      publishResult.className = "publish-result error";
      publishResult.textContent = /** @type {Error} */ (err).message;
    }
  }

  main.replaceChildren(
    h("h1", {}, h("span", { class: "muted" }, "topic "), topic),
    h("div", { class: "headline" }, status),
    stats,
    h(
      "form",
      { class: "publish-form", onsubmit: publish },
      h("label", { class: "field" }, h("span", { class: "field-name" }, "Message JSON"), message),
      h("label", { class: "field" }, h("span", { class: "field-name" }, "Headers"), header),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Publish"), publishResult),
    ),
    h("h2", {}, "Events ", h("small", { class: "muted" }, "newest first")),
    empty,
    list,
  );
  renderFleet();

  const source = new EventSource(`/api/topics/${encodeURIComponent(topic)}`);
  source.addEventListener("subscribed", (e) => {
    status.dataset.state = "live";
    status.textContent = `listening via the ${JSON.parse(e.data).broker} broker`;
  });
  source.addEventListener("error", () => {
    status.dataset.state = "down";
    status.textContent = "reconnecting…";
  });
  source.addEventListener("failed", (e) => {
    source.close(); // retrying a subscription the broker refused would only repeat the error
    status.dataset.state = "down";
    status.textContent = `cannot subscribe: ${JSON.parse(e.data).detail}`;
  });
  source.addEventListener("event", (e) => {
    const event = /** @type {ShownEvent} */ (JSON.parse(e.data));
    empty.hidden = true;
    const kind = event.encoding === "json" ? undefined : h("span", { class: "badge" }, event.messageType ? `${event.encoding} ${event.messageType}` : event.encoding);
    list.prepend(
      h(
        "li",
        { class: "event", "data-encoding": event.encoding },
        h("div", { class: "event-meta" }, h("time", {}, new Date(event.receivedAt).toLocaleTimeString()), keyValueChips(event.header), kind, h("span", { class: "muted" }, `${event.size} bytes`)),
        h("pre", {}, typeof event.body === "string" ? event.body : pretty(event.body)),
      ),
    );
    while (list.children.length > MAX_TAILED_EVENTS) list.lastElementChild?.remove();
  });
  return { close: () => source.close(), fleetChanged: renderFleet };
}

// ---- start ----

$("service-filter").addEventListener("input", renderSidebar);
$("show-internal").addEventListener("change", () => {
  renderSidebar();
  openView.fleetChanged?.();
});
$("topic-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const topic = String(new FormData(/** @type {HTMLFormElement} */ (e.target)).get("topic") ?? "").trim();
  if (topic) location.hash = `#/topic/${encodeURIComponent(topic)}`;
});
window.addEventListener("hashchange", route);
connectEvents();
route();
