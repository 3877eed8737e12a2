// The tsmicro dashboard: plain browser JavaScript, no build step.
// Services and nodes come live from /api/events (server-sent events fed by the registry's watch);
// the service view calls endpoints through /api/call; the topic view tails /api/topics/<topic>.

const MAX_TAILED_EVENTS = 200;

/** name → versions (each a go-micro Service with its nodes) */
const services = new Map();
const tailedTopics = [];
/** False until the first snapshot: before it, a service missing from the map is not known to be gone. */
let synced = false;
let openView = { close() {} };

// ---- DOM helpers ----

/** h("div", {class: "x"}, child, "text") — text is always set as text, never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return el;
}

const $ = (id) => document.getElementById(id);
const pretty = (value) => JSON.stringify(value, null, 2);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const nodesOf = (versions) => versions.flatMap((s) => s.nodes.map((node) => ({ ...node, version: s.version })));

function keyValueChips(map) {
  const entries = Object.entries(map ?? {});
  if (entries.length === 0) return h("span", { class: "muted" }, "–");
  return h("span", { class: "chips" }, entries.map(([k, v]) => h("span", { class: "chip" }, h("b", {}, k), `=${v}`)));
}

// ---- live services ----

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
    const snapshot = JSON.parse(e.data);
    $("plugins").textContent = `registry ${snapshot.registry} · broker ${snapshot.broker}`;
    const before = [...services.keys()];
    services.clear();
    for (const s of snapshot.services) services.set(s.name, [...(services.get(s.name) ?? []), s]);
    synced = true;
    renderServiceList();
    // Also after a reconnect: the open view is updated in place, keeping what was typed into it.
    for (const name of new Set([...before, ...services.keys()])) openView.serviceChanged?.(name);
  });
  source.addEventListener("service", (e) => {
    const { name, versions } = JSON.parse(e.data);
    if (versions.length === 0) services.delete(name);
    else services.set(name, versions);
    renderServiceList();
    openView.serviceChanged?.(name);
  });
}

function renderServiceList() {
  const filter = $("service-filter").value.trim().toLowerCase();
  const names = [...services.keys()].sort().filter((name) => name.toLowerCase().includes(filter));
  const current = decodeURIComponent(location.hash.match(/^#\/service\/(.+)$/)?.[1] ?? "");
  $("service-list").replaceChildren(
    ...names.map((name) => {
      const versions = services.get(name);
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
  $("service-count").textContent = services.size ? String(services.size) : "";
  $("no-services").hidden = services.size > 0;
}

// ---- routing: #/service/<name>, #/topic/<topic>, otherwise the overview ----

function route() {
  openView.close();
  const [, kind, arg] = location.hash.match(/^#\/(service|topic)\/(.+)$/) ?? [];
  const main = $("main");
  if (kind === "service") openView = serviceView(main, decodeURIComponent(arg));
  else if (kind === "topic") openView = topicView(main, decodeURIComponent(arg));
  else openView = overview(main);
  renderServiceList();
}

function overview(main) {
  const rows = h("tbody");
  const empty = h("p", { class: "muted" }, "No services in the registry yet. Start one and it appears here.");
  function render() {
    empty.hidden = services.size > 0;
    rows.replaceChildren(
      ...[...services.keys()].sort().flatMap((name) =>
        services.get(name).map((s) =>
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/service/${encodeURIComponent(name)}` }, name)),
            h("td", {}, s.version),
            h("td", {}, String(s.nodes.length)),
            h("td", { class: "mono" }, (s.endpoints ?? []).map((e) => e.name).join(", ") || "–"),
          ),
        ),
      ),
    );
  }
  main.replaceChildren(
    h("h1", {}, "Services"),
    h("p", { class: "muted" }, "Live from the registry: services appear and disappear as they register and stop. Pick one to see its nodes and call its endpoints, or name a topic to tail its events."),
    h("table", {}, h("thead", {}, h("tr", {}, ["Service", "Version", "Nodes", "Endpoints"].map((t) => h("th", {}, t)))), rows),
    empty,
  );
  render();
  return { close() {}, serviceChanged: render };
}

// ---- service view ----

function serviceView(main, name) {
  const headline = h("div", { class: "headline" });
  const nodeRows = h("tbody");
  const endpointList = h("div", { class: "endpoints" });
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
      h("thead", {}, h("tr", {}, ["Node", "Address", "Version", "Metadata", "Health"].map((t) => h("th", {}, t)))),
      nodeRows,
    ),
    h("h2", {}, "Endpoints"),
    endpointList,
  );

  async function checkHealth() {
    const res = await fetch(`/api/health/${encodeURIComponent(name)}`);
    if (!res.ok) return;
    for (const node of await res.json()) {
      const cell = nodeRows.querySelector(`[data-health="${CSS.escape(node.id)}"]`);
      if (!cell) continue;
      cell.dataset.status = node.status;
      cell.textContent = node.status === "ok" ? `ok · ${node.latencyMs} ms` : `${node.status}${node.error ? `: ${node.error.detail}` : ""}`;
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
        ),
      ),
    );
    // Endpoint forms are rebuilt only when the endpoints change, so typing is never lost to a node update.
    const endpoints = versions[0]?.endpoints ?? []; // the service's own first, Debug.* last (sorted by the server)
    const key = JSON.stringify(endpoints);
    if (key !== shownEndpoints && endpoints.length > 0) {
      shownEndpoints = key;
      // Few endpoints: all the service's own are open; many: the first. Debug.* stays folded.
      const open = (e, i) => !e.name.startsWith("Debug.") && (i === 0 || endpoints.length <= 4);
      endpointList.replaceChildren(...endpoints.map((e, i) => endpointCard(name, e, open(e, i))));
    }
    if (versions.length > 0) checkHealth();
  }

  update();
  return {
    close() {},
    serviceChanged(changed) {
      if (changed === name) update();
    },
  };
}

// ---- endpoint forms: one input per field of the request shape, all writing into the request JSON ----

const NUMBER_TYPE = /^(u?int(8|16|32|64)?|s?fixed(32|64)|sint(32|64)|float(32|64)?|double|number)$/i;
const LIST_TYPE = /^(\[\]|repeated\b|map\b|map\[)/i;

function fieldKind(field) {
  if (field.values?.length || LIST_TYPE.test(field.type)) return "json";
  if (/^bool(ean)?$/i.test(field.type)) return "bool";
  if (NUMBER_TYPE.test(field.type)) return "number";
  return "text";
}

/** A JSON template of a shape, for fields that take JSON (nested messages, lists, maps). */
function template(field) {
  if (field.values?.length) return Object.fromEntries(field.values.map((f) => [f.name, template(f)]));
  if (LIST_TYPE.test(field.type)) return field.type.startsWith("map") ? {} : [];
  return { bool: false, number: 0, text: "", json: null }[fieldKind(field)];
}

function fieldInput(field, onChange) {
  const kind = fieldKind(field);
  const common = { name: field.name, "data-field": field.name, "aria-label": field.name };
  if (kind === "bool") {
    return h("select", { ...common, onchange: onChange }, h("option", { value: "" }, "(unset)"), h("option", {}, "true"), h("option", {}, "false"));
  }
  if (kind === "json") return h("textarea", { ...common, rows: 3, placeholder: JSON.stringify(template(field)), oninput: onChange });
  return h("input", { ...common, type: kind === "number" ? "number" : "text", step: kind === "number" ? "any" : undefined, placeholder: field.type, oninput: onChange });
}

/** The field's value as the request wants it; undefined leaves the field out. */
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

function shapeText(value) {
  if (!value) return "–";
  if (!value.values?.length) return value.type;
  return `${value.type} { ${value.values.map((f) => `${f.name}: ${f.values?.length ? shapeText(f) : f.type}`).join(", ")} }`;
}

function endpointCard(serviceName, endpoint, open) {
  const fields = endpoint.request?.values ?? [];
  const requestJson = h("textarea", { class: "request-json", name: "request", rows: Math.min(12, Math.max(4, fields.length + 2)), spellcheck: "false", "aria-label": "Request JSON" });
  requestJson.value = "{}";
  const result = h("div", { class: "result", "aria-live": "polite" });
  const callButton = h("button", { type: "submit" }, "Call");

  function fieldChanged(field, input) {
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

  async function call(e) {
    e.preventDefault();
    let request;
    try {
      request = JSON.parse(requestJson.value || "{}");
    } catch (err) {
      showResult(result, "error", "Request is not valid JSON", err.message);
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
      showResult(result, "error", "The dashboard did not answer", err.message);
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

function showResult(container, kind, title, text) {
  container.replaceChildren(h("div", { class: `result-title ${kind}` }, title), h("pre", { class: "result-body" }, text));
}

// ---- topic view: tail over SSE, publish through /api/publish ----

function rememberTopic(topic) {
  const i = tailedTopics.indexOf(topic);
  if (i >= 0) tailedTopics.splice(i, 1);
  tailedTopics.unshift(topic);
  $("topic-list").replaceChildren(...tailedTopics.slice(0, 8).map((t) => h("li", {}, h("a", { href: `#/topic/${encodeURIComponent(t)}` }, t))));
}

function topicView(main, topic) {
  rememberTopic(topic);
  const status = h("span", { class: "tail-status", "data-state": "connecting" }, "subscribing…");
  const list = h("ol", { class: "events" });
  const empty = h("p", { class: "muted" }, "No events yet.");
  const message = h("textarea", { name: "message", rows: 4, spellcheck: "false", "aria-label": "Message JSON" });
  message.value = "{}";
  const header = h("input", { name: "header", placeholder: "name=davie, other=value", "aria-label": "Headers" });
  const publishResult = h("span", { class: "publish-result", "aria-live": "polite" });

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
      publishResult.textContent = err.message;
    }
  }

  main.replaceChildren(
    h("h1", {}, h("span", { class: "muted" }, "topic "), topic),
    h("div", { class: "headline" }, status),
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
    const event = JSON.parse(e.data);
    empty.hidden = true;
    const kind = event.encoding === "json" ? undefined : h("span", { class: "badge" }, event.messageType ? `${event.encoding} ${event.messageType}` : event.encoding);
    list.prepend(
      h(
        "li",
        { class: "event" },
        h("div", { class: "event-meta" }, h("time", {}, new Date(event.receivedAt).toLocaleTimeString()), keyValueChips(event.header), kind, h("span", { class: "muted" }, `${event.size} bytes`)),
        h("pre", {}, typeof event.body === "string" ? event.body : pretty(event.body)),
      ),
    );
    while (list.children.length > MAX_TAILED_EVENTS) list.lastElementChild.remove();
  });
  return { close: () => source.close() };
}

// ---- start ----

$("service-filter").addEventListener("input", renderServiceList);
$("topic-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const topic = new FormData(e.target).get("topic").trim();
  if (topic) location.hash = `#/topic/${encodeURIComponent(topic)}`;
});
window.addEventListener("hashchange", route);
connectEvents();
route();
