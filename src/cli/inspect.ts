/** What the command and the dashboard both ask of a registry, a client and a broker. */
import type { Event } from "../broker/broker.ts";
import type { Client } from "../client/client.ts";
import { JSON_TYPE, PROTOBUF_TYPE, codecFor } from "../codec/codec.ts";
import { MicroError, type MicroErrorJSON } from "../errors.ts";
import { CONTENT_TYPE, MESSAGE_TYPE, TOPIC, decodeEvent } from "../events.ts";
import { isNotFound, type Endpoint, type Registry, type Service } from "../registry/registry.ts";
import { decodeRawProto } from "./raw-proto.ts";
import { decodeShapedProto, type ShapeResolver } from "./shaped-proto.ts";

/** Every version of a service with its nodes; [] when the registry has none. */
export async function lookup(registry: Registry, name: string): Promise<Service[]> {
  try {
    return sortVersions(await registry.getService(name));
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

/** Versions in order; in each, the service's own endpoints by name, then the framework's Debug.*. */
function sortVersions(versions: Service[]): Service[] {
  const rank = (e: Endpoint) => (e.name.startsWith("Debug.") ? 1 : 0);
  return versions
    .map((s) => ({ ...s, endpoints: [...(s.endpoints ?? [])].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name)) }))
    .sort((a, b) => a.version.localeCompare(b.version));
}

/** The distinct service names, sorted. */
export async function serviceNames(registry: Registry): Promise<string[]> {
  return [...new Set((await registry.listServices()).map((s) => s.name))].sort();
}

/** Every service of the registry, each version with its nodes. */
export async function allServices(registry: Registry): Promise<Service[]> {
  const names = await serviceNames(registry);
  return (await Promise.all(names.map((name) => lookup(registry, name)))).flat();
}

export interface NodeHealth {
  id: string;
  address: string;
  version: string;
  /** The node's own status ("ok"), "unreachable" (no connection or no answer in time) or "error". */
  status: string;
  latencyMs: number;
  error?: MicroErrorJSON;
}

const HEALTH_TIMEOUT_MS = 3000;

/** Asks each node for Debug.Health directly (no selection, no retries), all at once. */
export function checkHealth(client: Client, versions: Service[]): Promise<NodeHealth[]> {
  const nodes = versions.flatMap((s) => s.nodes.map((node) => ({ service: s, node })));
  return Promise.all(
    nodes.map(async ({ service, node }): Promise<NodeHealth> => {
      const base = { id: node.id, address: node.address, version: service.version };
      const started = performance.now();
      const latency = () => Math.round(performance.now() - started);
      try {
        const res = await client.call<{ status?: unknown }>(service.name, "Debug.Health", {}, { address: node.address, retries: 0, requestTimeout: HEALTH_TIMEOUT_MS });
        return { ...base, status: String(res?.status ?? "unknown"), latencyMs: latency() };
      } catch (err) {
        const error = MicroError.from(err, "go.micro.client");
        return { ...base, status: error.retryable ? "unreachable" : "error", latencyMs: latency(), error: error.toJSON() };
      }
    }),
  );
}

export interface ShownEvent {
  topic: string;
  /** The publisher's headers, without the framework's own. */
  header: Record<string, string>;
  contentType: string;
  /** The protobuf type name, when the publisher said. */
  messageType?: string;
  /**
   * "json"; "protobuf" (field names from the registry's shape of messageType); "protobuf-raw"
   * (field numbers: the type is unknown here); "text" or "base64".
   */
  encoding: "json" | "protobuf" | "protobuf-raw" | "text" | "base64";
  body: unknown;
  size: number;
  receivedAt: string;
}

const FRAMEWORK_HEADERS = new Set([CONTENT_TYPE, MESSAGE_TYPE, TOPIC]);

/** An event as a person or a script wants to see it, whatever its codec; shapes names protobuf fields. */
export function showEvent(event: Event, shapes?: ShapeResolver): ShownEvent {
  const { header, body } = event.message;
  const contentType = header[CONTENT_TYPE] ?? JSON_TYPE;
  const shown = {
    topic: event.topic,
    header: Object.fromEntries(Object.entries(header).filter(([k]) => !FRAMEWORK_HEADERS.has(k))),
    contentType,
    messageType: header[MESSAGE_TYPE],
    size: body.length,
    receivedAt: new Date().toISOString(),
  };
  const codec = codecFor(contentType);
  if (codec?.contentType === JSON_TYPE) {
    try {
      return { ...shown, encoding: "json", body: decodeEvent(event) };
    } catch {
      /* not JSON after all: shown as text or bytes below */
    }
  }
  if (codec?.contentType === PROTOBUF_TYPE) {
    const fields = shown.messageType ? shapes?.(shown.messageType) : undefined;
    try {
      if (fields) return { ...shown, encoding: "protobuf", body: decodeShapedProto(body, fields, shapes) };
    } catch {
      /* the advertised shape does not fit: shown schema-less below */
    }
    try {
      return { ...shown, encoding: "protobuf-raw", body: decodeRawProto(body) };
    } catch {
      /* malformed: shown as bytes below */
    }
  }
  const text = Buffer.from(body).toString("utf8");
  if (Buffer.from(text, "utf8").equals(Buffer.from(body))) return { ...shown, encoding: "text", body: text };
  return { ...shown, encoding: "base64", body: Buffer.from(body).toString("base64") };
}
