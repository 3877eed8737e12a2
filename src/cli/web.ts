/**
 * `tsmicro web`: the static page in src/cli/web/ and a small API over the command's Service.
 *   GET  /api/events          SSE: "snapshot" {registry, broker, services}, then "service" {name, versions} per change,
 *                             and "fleet" (FleetSnapshot: rates, latency, topics, node health) after every scrape
 *   GET  /api/health/<name>   each node's Debug.Health (NodeHealth[])
 *   POST /api/call            {service, endpoint, request} → the response, or the go-micro error with its code as status
 *   POST /api/publish         {topic, message, header?}
 *   GET  /api/topics/<topic>  SSE: "subscribed", then one "event" (ShownEvent) per message while the page listens;
 *                             "failed" (the go-micro error) when the broker cannot subscribe
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Subscriber } from "../broker/broker.ts";
import { MicroError, badRequest, forbidden, notFound } from "../errors.ts";
import { joinHostPort, parseHostPort } from "../address.ts";
import type { Service } from "../service.ts";
import { Catalog } from "./catalog.ts";
import { Fleet } from "./fleet/fleet.ts";
import { checkHealth, showEvent } from "./inspect.ts";

const WEB_ID = "tsmicro.web";
const MAX_BODY_BYTES = 1 << 20;
const KEEP_ALIVE_MS = 15_000;
/** How often the nodes' /health and /metrics are read. */
export const DEFAULT_SCRAPE_INTERVAL_MS = 2000;

const asset = (file: string, type: string) => ({ body: readFileSync(new URL(`./web/${file}`, import.meta.url)), type });
const ASSETS = new Map([
  ["/", asset("index.html", "text/html; charset=utf-8")],
  ["/app.js", asset("app.js", "text/javascript; charset=utf-8")],
  ["/dom.js", asset("dom.js", "text/javascript; charset=utf-8")],
  ["/fleet.js", asset("fleet.js", "text/javascript; charset=utf-8")],
  ["/style.css", asset("style.css", "text/css; charset=utf-8")],
  ["/favicon.svg", asset("favicon.svg", "image/svg+xml")],
]);

export interface Dashboard {
  url: string;
  close(): Promise<void>;
}

type Send = (event: string, data: unknown) => void;

export async function startWeb(service: Service, address: string, scrapeIntervalMs = DEFAULT_SCRAPE_INTERVAL_MS): Promise<Dashboard> {
  const registry = await service.registry();
  const catalog = await Catalog.open(registry);
  const fleet = new Fleet(catalog, scrapeIntervalMs);
  fleet.start();
  const streams = new Set<http.ServerResponse>();
  const { host, port } = parseHostPort(address);

  /** Opens a server-sent event stream that lives until the page goes away. */
  function stream(res: http.ServerResponse, onClose: () => void): Send {
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" });
    streams.add(res);
    const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), KEEP_ALIVE_MS);
    res.once("close", () => {
      clearInterval(keepAlive);
      streams.delete(res);
      onClose();
    });
    return (event, data) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  async function events(res: http.ServerResponse): Promise<void> {
    const broker = String(await service.broker());
    let stopListening = () => {};
    const send = stream(res, () => stopListening());
    // The snapshot and the listener are set up in one go, so no change falls between them.
    send("snapshot", { registry: String(registry), broker, services: catalog.snapshot() });
    const latest = fleet.latest();
    if (latest) send("fleet", latest);
    const stops = [catalog.onChange((name, versions) => send("service", { name, versions })), fleet.onSnapshot((snapshot) => send("fleet", snapshot))];
    stopListening = () => stops.forEach((stop) => stop());
  }

  async function tail(res: http.ServerResponse, topic: string): Promise<void> {
    let subscriber: Subscriber | undefined;
    let closed = false;
    const send = stream(res, () => {
      closed = true;
      void subscriber?.unsubscribe().catch(() => {});
    });
    try {
      const broker = await service.broker();
      await broker.connect();
      subscriber = await broker.subscribe(topic, (event) => send("event", showEvent(event, catalog.shapeOf)));
      if (closed) await subscriber.unsubscribe(); // the page left while subscribing
      else send("subscribed", { topic, broker: String(broker) });
    } catch (err) {
      // The stream is open already: the failure goes to the page as an event, which then stops.
      send("failed", MicroError.from(err, WEB_ID));
      res.end();
    }
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://dashboard");
    const path = url.pathname;
    const asset = ASSETS.get(path === "/index.html" ? "/" : path);
    if (req.method === "GET" && asset) {
      res.writeHead(200, { "Content-Type": asset.type, "Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff" });
      res.end(asset.body);
      return;
    }
    if (req.method === "GET" && path === "/api/events") return events(res);
    if (req.method === "GET" && path.startsWith("/api/topics/")) return tail(res, decodeURIComponent(path.slice("/api/topics/".length)));
    if (req.method === "GET" && path.startsWith("/api/health/")) {
      const name = decodeURIComponent(path.slice("/api/health/".length));
      const versions = catalog.versions(name);
      if (versions.length === 0) throw notFound(WEB_ID, `service ${name} not found in the ${registry} registry`);
      return reply(res, 200, await checkHealth(await service.client(), versions));
    }
    if (req.method === "POST" && path === "/api/call") {
      const { service: name, endpoint, request } = (await readJson(req)) as { service?: unknown; endpoint?: unknown; request?: unknown };
      if (typeof name !== "string" || typeof endpoint !== "string") throw badRequest(WEB_ID, "service and endpoint must be strings");
      return reply(res, 200, await service.call(name, endpoint, request ?? {}));
    }
    if (req.method === "POST" && path === "/api/publish") {
      const { topic, message, header } = (await readJson(req)) as { topic?: unknown; message?: unknown; header?: Record<string, string> };
      if (typeof topic !== "string" || topic === "") throw badRequest(WEB_ID, "topic must be a non-empty string");
      await service.publish(topic, message ?? {}, { header });
      return reply(res, 200, { topic, broker: String(await service.broker()) });
    }
    throw notFound(WEB_ID, `no ${req.method} ${path}`);
  }

  let allowedHosts = new Set<string>(); // known once listening: the port may be chosen by the system
  const server = http.createServer((req, res) => {
    const refusal = refuse(req, isLoopback(host) ? allowedHosts : undefined);
    if (refusal) return reply(res, 403, forbidden(WEB_ID, refusal));
    route(req, res).catch((err: unknown) => {
      const error = MicroError.from(err, WEB_ID);
      if (res.headersSent) res.end();
      else reply(res, error.code >= 400 && error.code < 600 ? error.code : 500, error);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  allowedHosts = new Set(["127.0.0.1", "localhost", "[::1]"].map((h) => `${h}:${bound.port}`));
  return {
    url: `http://${joinHostPort(bound.address, bound.port)}/`,
    async close() {
      fleet.stop();
      catalog.close();
      for (const res of streams) res.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Refuses what other sites could make the user's browser send. allowedHosts (for a loopback
 * listener) defeats DNS rebinding: a rebound page still sends its own name as Host.
 */
function refuse(req: http.IncomingMessage, allowedHosts: Set<string> | undefined): string | undefined {
  if (allowedHosts && !allowedHosts.has(req.headers.host ?? "")) return `unexpected Host header ${req.headers.host ?? "(none)"}`;
  if (req.method !== "POST") return undefined;
  // Cross-site form posts: only same-origin JSON is accepted.
  if (req.headers.origin && req.headers.origin !== `http://${req.headers.host}`) return `cross-origin request from ${req.headers.origin}`;
  if (!/^application\/json\b/.test(req.headers["content-type"] ?? "")) return "requests must be application/json";
  return undefined;
}

const isLoopback = (host: string) => host === "localhost" || host === "::1" || host.startsWith("127.");

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw badRequest(WEB_ID, `request body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (err) {
    throw badRequest(WEB_ID, `request body is not valid JSON: ${(err as Error).message}`);
  }
}
