/** Every benchmark scenario, the anchors each is compared with, and the goals of issue 6. */

import type { ScenarioParams } from "./role.ts";

/** A system file in bench/systems and one of its roles. */
export interface RoleRef {
  system: string;
  role: string;
}

export interface LoadScenario {
  id: string;
  group: "rpc" | "pubsub" | "scale" | "soak";
  label: string;
  /** How the scenario is named in the ratios of others that compare with it. */
  short: string;
  server: RoleRef;
  client: RoleRef;
  /** Whose operations count: the client's calls (RPC) or the subscriber's receipts (pub/sub). */
  measuredBy: "client" | "server";
  needsNats?: boolean;
  /** Passed to both roles: what a row of the "how cost grows" table varies. */
  params?: ScenarioParams;
  /** Bytes on the wire per operation (request + response bodies), for MB/s. */
  bytesPerOp?: number;
  /** The Node major both processes run on, when not the harness's own (Moleculer 0.15 needs ≥ 22); --node=N overrides every row's. */
  node?: number;
  /** Runs bench/go's go-micro program, built from the Go module proxy (needs go). */
  needsGo?: boolean;
  /** Loopback ports to reserve up front (Moleculer TCP lists every node's port in its static urls). */
  ports?: number;
  /** Ids of the scenarios whose throughput this one is divided by. */
  anchors?: string[];
}

export interface IdleScenario {
  id: string;
  label: string;
  worker: RoleRef;
  /** Compiled to JavaScript on plain node (as deployed), or the TypeScript under tsx (as developed). */
  runtime: "node" | "tsx";
  ports?: number;
}

const role = (system: string, name: string): RoleRef => ({ system, role: name });

export const LOAD_SCENARIOS: LoadScenario[] = [
  {
    id: "rpc.tsmicro-tcp",
    group: "rpc",
    label: "tsmicro, default transport (tcp frames)",
    short: "tsmicro tcp",
    server: role("tsmicro", "server"),
    client: role("tsmicro", "tcp-client"),
    measuredBy: "client",
    anchors: ["rpc.raw-tcp", "rpc.raw-tcp-json", "rpc.moleculer-tcp", "rpc.gomicro"],
  },
  {
    id: "rpc.tsmicro-http",
    group: "rpc",
    label: "tsmicro, http transport",
    short: "tsmicro http",
    server: role("tsmicro", "server"),
    client: role("tsmicro", "http-client"),
    measuredBy: "client",
    anchors: ["rpc.node-http", "rpc.moleculer-tcp"],
  },
  {
    id: "rpc.node-http",
    group: "rpc",
    label: "raw node:http keep-alive",
    short: "node:http",
    server: role("node-http", "server"),
    client: role("node-http", "client"),
    measuredBy: "client",
    anchors: ["rpc.raw-tcp"],
  },
  {
    id: "rpc.raw-tcp",
    group: "rpc",
    label: "raw length-prefixed TCP echo (floor)",
    short: "raw tcp",
    server: role("raw-tcp", "server"),
    client: role("raw-tcp", "client"),
    measuredBy: "client",
  },
  {
    id: "rpc.raw-tcp-json",
    group: "rpc",
    label: "the floor with JSON bodies (encoded and decoded each side)",
    short: "floor + JSON",
    server: role("raw-tcp", "json-server"),
    client: role("raw-tcp", "json-client"),
    measuredBy: "client",
    anchors: ["rpc.raw-tcp"],
  },
  {
    id: "rpc.moleculer-tcp",
    group: "rpc",
    label: "Moleculer 0.14, TCP transporter (loopback)",
    short: "moleculer tcp",
    server: role("moleculer", "tcp-server"),
    client: role("moleculer", "tcp-client"),
    measuredBy: "client",
    ports: 2,
    anchors: ["rpc.raw-tcp"],
  },
  {
    id: "rpc.tsmicro-tcp-node24",
    group: "rpc",
    label: "tsmicro, default transport, on Node 24",
    short: "tsmicro tcp node 24",
    server: role("tsmicro", "server"),
    client: role("tsmicro", "tcp-client"),
    measuredBy: "client",
    node: 24,
    anchors: ["rpc.moleculer15-tcp"],
  },
  {
    id: "rpc.moleculer15-tcp",
    group: "rpc",
    label: "Moleculer 0.15, TCP transporter (loopback), on Node 24",
    short: "moleculer 0.15 tcp",
    server: role("moleculer-015", "tcp-server"),
    client: role("moleculer-015", "tcp-client"),
    measuredBy: "client",
    ports: 2,
    node: 24,
    anchors: ["rpc.raw-tcp"],
  },
  {
    id: "rpc.gomicro",
    group: "rpc",
    label: "go-micro v5, its default transport (http)",
    short: "go-micro",
    server: role("gomicro", "server"),
    client: role("gomicro", "client"),
    measuredBy: "client",
    needsGo: true,
    anchors: ["rpc.raw-tcp"],
  },
  {
    id: "rpc.moleculer-nats",
    group: "rpc",
    label: "Moleculer, NATS transporter",
    short: "moleculer nats",
    server: role("moleculer", "nats-server"),
    client: role("moleculer", "nats-client"),
    measuredBy: "client",
    needsNats: true,
    anchors: ["rpc.moleculer-tcp"],
  },
  {
    id: "pubsub.nats-raw",
    group: "pubsub",
    label: "raw NATS client publish → subscribe",
    short: "raw nats",
    server: role("nats", "subscriber"),
    client: role("nats", "publisher"),
    measuredBy: "server",
    needsNats: true,
  },
  {
    id: "pubsub.tsmicro-nats",
    group: "pubsub",
    label: "tsmicro nats broker",
    short: "tsmicro nats",
    server: role("tsmicro", "nats-subscriber"),
    client: role("tsmicro", "nats-publisher"),
    measuredBy: "server",
    needsNats: true,
    anchors: ["pubsub.nats-raw", "pubsub.moleculer-nats"],
  },
  {
    id: "pubsub.moleculer-nats",
    group: "pubsub",
    label: "Moleculer events over NATS",
    short: "moleculer events",
    server: role("moleculer", "nats-subscriber"),
    client: role("moleculer", "nats-publisher"),
    measuredBy: "server",
    needsNats: true,
    anchors: ["pubsub.nats-raw"],
  },
  {
    id: "pubsub.tsmicro-http",
    group: "pubsub",
    label: "tsmicro http broker, the default (no NATS)",
    short: "tsmicro http broker",
    server: role("tsmicro", "http-broker-subscriber"),
    client: role("tsmicro", "http-broker-publisher"),
    measuredBy: "server",
    anchors: ["pubsub.nats-raw", "pubsub.gomicro-http"],
  },
  {
    id: "pubsub.gomicro-http",
    group: "pubsub",
    label: "go-micro v5 http broker, its default",
    short: "go-micro http broker",
    server: role("gomicro", "subscriber"),
    client: role("gomicro", "publisher"),
    measuredBy: "server",
    needsGo: true,
    anchors: ["pubsub.nats-raw"],
  },
];

/** How cost grows: payload size against the floor at the same size, nodes in the registry, subscribers per topic. */
const PAYLOADS: Array<[bytes: number, name: string]> = [
  [100, "100 B"],
  [10 * 1024, "10 KB"],
  [1024 * 1024, "1 MB"],
];
// Request {"name":"…"} and response {"msg":"Hello …"}: the payload twice plus 27 bytes of JSON.
const echoBytes = (payload: number) => 2 * payload + 27;

/** The echo at a payload size, through tsmicro's default transport or the raw TCP floor (its anchor). */
function payloadRow(bytes: number, name: string, system: "tsmicro" | "floor"): LoadScenario {
  const tsmicro = system === "tsmicro";
  return {
    id: `scale.${tsmicro ? "rpc" : "floor"}-${bytes}`,
    group: "scale",
    label: `RPC, ${name} payload, ${tsmicro ? "tsmicro default transport" : "raw TCP echo (floor)"}`,
    short: `${tsmicro ? "tsmicro" : "floor"} ${name}`,
    server: tsmicro ? role("tsmicro", "server") : role("raw-tcp", "server"),
    client: tsmicro ? role("tsmicro", "tcp-client") : role("raw-tcp", "client"),
    measuredBy: "client",
    params: { payload: bytes },
    bytesPerOp: echoBytes(bytes),
    anchors: tsmicro ? [`scale.floor-${bytes}`] : [],
  };
}

/** RPC with n nodes of the service in the client's registry, or the default broker with n subscribers; anchored on n = 1. */
function countRow(what: "nodes" | "subscribers", n: number): LoadScenario {
  const rpc = what === "nodes";
  const noun = `${rpc ? "node" : "subscriber"}${n > 1 ? "s" : ""}`;
  return {
    id: `scale.${what}-${n}`,
    group: "scale",
    label: rpc ? `RPC with ${n} ${noun} of the service in the registry` : `default broker, ${n} ${noun} (ops = deliveries)`,
    short: `${n} ${noun}`,
    server: rpc ? role("tsmicro", "server") : role("tsmicro", "http-broker-subscriber"),
    client: rpc ? role("tsmicro", "tcp-client") : role("tsmicro", "http-broker-publisher"),
    measuredBy: rpc ? "client" : "server",
    params: { [what]: n },
    anchors: n > 1 ? [`scale.${what}-1`] : [],
  };
}

LOAD_SCENARIOS.push(
  ...PAYLOADS.flatMap(([bytes, name]) => [payloadRow(bytes, name, "tsmicro"), payloadRow(bytes, name, "floor")]),
  ...[1, 10, 100].map((n) => countRow("nodes", n)),
  ...[1, 10, 50].map((n) => countRow("subscribers", n)),
);

/** The soak: tsmicro's defaults at full load for a long window (run.ts gives it its own timing), RSS growth after the warm-up. */
LOAD_SCENARIOS.push(
  ...["rpc.tsmicro-tcp", "pubsub.tsmicro-http"].map((id): LoadScenario => {
    const s = LOAD_SCENARIOS.find((x) => x.id === id)!;
    return { ...s, id: `soak.${id}`, group: "soak", label: `${s.label}, soak`, anchors: [] };
  }),
);

// tsx's loader runs on a thread of its own (module.register hooks) and costs ~35 MB in every
// process; the rows under tsx show it, the plain-node rows show what the frameworks cost.
export const IDLE_SCENARIOS: IdleScenario[] = [
  { id: "idle.tsmicro", label: "tsmicro service (one endpoint, http broker), plain node", worker: role("tsmicro", "idle"), runtime: "node" },
  { id: "idle.moleculer", label: "Moleculer node (one action, TCP transporter), plain node", worker: role("moleculer", "idle"), runtime: "node", ports: 1 },
  { id: "idle.baseline", label: "empty Node process, plain node", worker: role("baseline", "idle"), runtime: "node" },
  { id: "idle.tsmicro-tsx", label: "tsmicro service, run with tsx", worker: role("tsmicro", "idle"), runtime: "tsx" },
  { id: "idle.baseline-tsx", label: "empty Node process, run with tsx", worker: role("baseline", "idle"), runtime: "tsx" },
];

export interface Goal {
  text: string;
  /** The measured figure and whether it meets the goal, or undefined if a scenario is missing. */
  check(results: ReadonlyMap<string, Measured>): { figure: string; met: boolean } | undefined;
}

export interface Measured {
  ops?: number;
  rssGrowthClient?: number;
  rssGrowthServer?: number;
  p50?: number;
  p99?: number;
  rssBytes?: number;
}

function ratio(results: ReadonlyMap<string, Measured>, id: string, anchor: string): number | undefined {
  const a = results.get(id)?.ops;
  const b = results.get(anchor)?.ops;
  return a && b ? a / b : undefined;
}

function atLeast(id: string, anchor: string, factor: number, text: string): Goal {
  return {
    text,
    check(results) {
      const r = ratio(results, id, anchor);
      return r === undefined ? undefined : { figure: `${r.toFixed(2)}×`, met: r >= factor };
    },
  };
}

function p99NoWorse(id: string, anchor: string, text: string): Goal {
  return {
    text,
    check(results) {
      const ours = results.get(id)?.p99;
      const theirs = results.get(anchor)?.p99;
      if (ours === undefined || theirs === undefined) return undefined;
      return { figure: `${ours.toFixed(2)} ms vs ${theirs.toFixed(2)} ms`, met: ours <= theirs };
    },
  };
}

export const GOALS: Goal[] = [
  atLeast("rpc.tsmicro-tcp", "rpc.gomicro", 1.5, "tsmicro default RPC ≥ 1.5× go-micro default RPC"),
  atLeast("pubsub.tsmicro-http", "pubsub.gomicro-http", 2, "tsmicro default broker ≥ 2× go-micro http broker"),
  atLeast("rpc.tsmicro-tcp", "rpc.moleculer-tcp", 2, "tsmicro default RPC ≥ 2× Moleculer 0.14 TCP throughput"),
  atLeast("rpc.tsmicro-tcp-node24", "rpc.moleculer15-tcp", 2, "on Node 24: tsmicro default RPC ≥ 2× Moleculer 0.15 TCP"),
  p99NoWorse("rpc.tsmicro-tcp", "rpc.moleculer-tcp", "tsmicro default RPC p99 no worse than Moleculer 0.14 TCP's"),
  p99NoWorse("rpc.tsmicro-tcp-node24", "rpc.moleculer15-tcp", "on Node 24: tsmicro default RPC p99 no worse than Moleculer 0.15's"),
  {
    text: "tsmicro default RPC ≥ 0.7× the raw TCP floor",
    check(results) {
      const r = ratio(results, "rpc.tsmicro-tcp", "rpc.raw-tcp");
      if (r === undefined) return undefined;
      // What JSON bodies alone leave of the floor: the most any RPC with a JSON codec could reach.
      const json = ratio(results, "rpc.raw-tcp-json", "rpc.raw-tcp");
      return { figure: `${r.toFixed(2)}×${json ? ` (the floor with JSON bodies: ${json.toFixed(2)}×)` : ""}`, met: r >= 0.7 };
    },
  },
  atLeast("pubsub.tsmicro-nats", "pubsub.moleculer-nats", 1.2, "tsmicro over NATS ≥ 1.2× Moleculer over NATS"),
  atLeast("pubsub.tsmicro-nats", "pubsub.nats-raw", 0.8, "tsmicro NATS pub/sub ≥ 0.8× raw NATS client"),
  {
    text: "default (http) broker ≥ 50k events/s, p50 ≤ 5 ms, p99 ≤ 25 ms",
    check(results) {
      const r = results.get("pubsub.tsmicro-http");
      if (r?.ops === undefined || r.p50 === undefined || r.p99 === undefined) return undefined;
      return {
        figure: `${Math.round(r.ops / 1000)}k/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`,
        met: r.ops >= 50_000 && r.p50 <= 5 && r.p99 <= 25,
      };
    },
  },
  atLeast("pubsub.tsmicro-http", "pubsub.nats-raw", 0.4, "default (http) broker ≥ 0.4× raw NATS client"),
  ...["soak.rpc.tsmicro-tcp", "soak.pubsub.tsmicro-http"].map(
    (id): Goal => ({
      text: `soak ${id.includes("rpc") ? "RPC" : "pub/sub"}: RSS growth after warm-up ≤ 5 MB (client, server)`,
      check(results) {
        const r = results.get(id);
        if (r?.rssGrowthClient === undefined || r.rssGrowthServer === undefined) return undefined;
        const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
        return { figure: `${mb(r.rssGrowthClient)}, ${mb(r.rssGrowthServer)}`, met: Math.max(r.rssGrowthClient, r.rssGrowthServer) <= 5 * 2 ** 20 };
      },
    }),
  ),
  {
    text: "idle tsmicro service ≤ 50 MB RSS",
    check(results) {
      const rss = results.get("idle.tsmicro")?.rssBytes;
      return rss === undefined ? undefined : { figure: `${(rss / 2 ** 20).toFixed(1)} MB`, met: rss <= 50 * 2 ** 20 };
    },
  },
];
