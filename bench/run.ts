/**
 * npm run bench [-- --smoke] [--only=id,…] [--rounds=N] [--window=ms] [--node=N] [--cpu-prof [--cpu-prof-dir=dir]]
 *
 * Runs every scenario of scenarios.ts with client and server in separate processes on 127.0.0.1
 * and prints one table: throughput, latency, CPU per process, ratios against the anchors of this
 * same run, idle RSS, and whether the goals hold. Progress goes to stderr, the table to stdout.
 */
import os from "node:os";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { canConnect } from "../test/helpers/net.ts";
import { codecBench, type CodecRow } from "./codec.ts";
import { goMicroBinary } from "./go/build.ts";
import { CONCURRENCY, nodeBinary, runIdle, runLoad, type LoadResult, type Timing } from "./harness.ts";
import { PUBSUB_WINDOW } from "./pubsub.ts";
import { GOALS, IDLE_SCENARIOS, LOAD_SCENARIOS, type LoadScenario, type Measured } from "./scenarios.ts";

const NATS_PORT = 4222;

const { values: args } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    only: { type: "string" },
    rounds: { type: "string" },
    window: { type: "string" },
    "cpu-prof": { type: "boolean", default: false },
    "cpu-prof-dir": { type: "string", default: ".tmp/profiles" },
    node: { type: "string" },
    "soak-window": { type: "string" },
  },
});
const profileDir = args["cpu-prof"] ? args["cpu-prof-dir"] : undefined;

const timing: Timing = args.smoke
  ? { warmupMs: 300, windowMs: 700, idleSettleMs: 300, profileDir }
  : { warmupMs: 1000, windowMs: Number(args.window ?? 4000), idleSettleMs: 2000, profileDir };
// The soak runs once: 10 s of warm-up, then a minute, measured again while V8's young generation
// grew during it, for at most 8 minutes in all (smoke: as short as the rest).
const soakTiming: Timing = args.smoke
  ? timing
  : { ...timing, warmupMs: 10_000, windowMs: Number(args["soak-window"] ?? 60_000), windowWithoutYoungGenerationStepWithinMs: 480_000 };
// Three: on a shared VM a round can run a quarter slower for reasons outside the processes measured.
const rounds = Number(args.rounds ?? (args.smoke ? 1 : 3));
// --only=part,…: the scenarios whose id contains a part; a part ending in "$" names one id exactly.
const selected = (id: string) =>
  !args.only || args.only.split(",").some((part) => (part.trim().endsWith("$") ? id === part.trim().slice(0, -1) : id.includes(part.trim())));

/** Builds go-micro's program before anything is timed (minutes the first time); a reason to skip its rows if that fails. */
function buildGoFixture(): string | undefined {
  progress("[bench] go-micro fixture (bench/go)");
  try {
    // Compiled workers cannot find bench/go from their own location: they are handed the program.
    process.env.BENCH_GOMICRO_BINARY = goMicroBinary();
    return undefined;
  } catch (err) {
    return `skipped: ${(err as Error).message}`;
  }
}

const ownMajor = Number(process.versions.node.split(".")[0]);
const nodeMajor = (s: LoadScenario) => (args.node ? Number(args.node) : (s.node ?? ownMajor));
const nodeFor = (s: LoadScenario) => nodeBinary(nodeMajor(s));

type Row = { scenario: LoadScenario; result?: LoadResult; skipped?: string; failed?: string };

const progress = (text: string) => process.stderr.write(`${text}\n`);

async function main(): Promise<void> {
  const natsUp = await canConnect(NATS_PORT);
  const loads = LOAD_SCENARIOS.filter((s) => selected(s.id));
  const rows = new Map<string, Row>(loads.map((s) => [s.id, { scenario: s }]));
  for (const s of loads) if (s.needsNats && !natsUp) rows.get(s.id)!.skipped = `skipped: NATS unreachable at 127.0.0.1:${NATS_PORT}`;
  for (const s of loads) if (!nodeFor(s)) rows.get(s.id)!.skipped = `skipped: no Node ${nodeMajor(s)} (this one's, or one .ci/setup/node.sh put in the cache)`;
  const goFixture = loads.some((s) => s.needsGo) ? buildGoFixture() : undefined;
  if (goFixture) for (const s of loads) if (s.needsGo) rows.get(s.id)!.skipped = goFixture;

  // Rounds alternate the order, and each scenario keeps its best round: a burst of load from
  // elsewhere on the machine then costs one round of one scenario, not the comparison.
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? loads : [...loads].reverse();
    for (const s of order) {
      const row = rows.get(s.id)!;
      if (row.skipped || (s.group === "soak" && round > 1)) continue;
      progress(`[bench] round ${round}/${rounds} ${s.id}`);
      try {
        const result = await runLoad(s, s.group === "soak" ? soakTiming : timing, nodeFor(s)!);
        progress(`[bench]   ${int(result.ops)} ops/s, p99 ${ms(result.p99)} ms, cpu ${pct(result.cpuClient)} + ${pct(result.cpuServer)}`);
        if (!row.result || result.ops > row.result.ops) row.result = result;
      } catch (err) {
        row.failed = `failed: ${(err as Error).message.split("\n")[0]}`;
        progress(`[bench] ${s.id} ${(err as Error).message}`);
      }
    }
  }

  const codecRows = selected("codec") ? (progress("[bench] codec"), codecBench({ durationMs: args.smoke ? 50 : 500 })) : [];

  const idle = IDLE_SCENARIOS.filter((s) => selected(s.id));
  progress(`[bench] idle RSS: ${idle.map((s) => s.id).join(", ")}`);
  const idleNode = nodeBinary(args.node ? Number(args.node) : ownMajor) ?? process.execPath;
  const rss = await Promise.all(idle.map((s) => runIdle(s, timing, idleNode).catch((err: Error) => err)));

  const measured = new Map<string, Measured>();
  for (const [id, row] of rows) if (row.result) measured.set(id, row.result);
  idle.forEach((s, i) => {
    const r = rss[i];
    if (typeof r === "number") measured.set(s.id, { rssBytes: r });
  });

  process.stdout.write(await header());
  process.stdout.write(table(rows, measured, codecRows, idle.map((s, i) => [s.label, rss[i]!] as const)));
}

async function header(): Promise<string> {
  // Read from disk: some packages' exports do not expose their package.json.
  const version = (pkg: string) =>
    (JSON.parse(readFileSync(pkg === "tsmicro" ? "package.json" : path.join("node_modules", pkg, "package.json"), "utf8")) as { version: string }).version;
  const cpus = os.cpus();
  const shape = args.smoke
    ? "SMOKE run (no thresholds)"
    : `warm-up ${timing.warmupMs / 1000} s, window ${timing.windowMs / 1000} s, best of ${rounds} round(s)`;
  return [
    `tsmicro benchmarks — ${cpus.length} cores (${cpus[0]?.model.trim()}), ${nodeVersions()}, ${os.platform()} ${os.release()}`,
    `tsmicro ${version("tsmicro")}, moleculer ${version("moleculer")} and ${version("moleculer-0.15")}, go-micro v5 (bench/go/go.mod), @nats-io/transport-node ${version("@nats-io/transport-node")}, nats ${version("nats")} (Moleculer's), nats-server ${await natsServerVersion()}`,
    `concurrency ${CONCURRENCY}, pub/sub window ${PUBSUB_WINDOW} events, ${shape}; all traffic on 127.0.0.1`,
    "",
  ].join("\n");
}

/** Which Node each row ran on. */
function nodeVersions(): string {
  const versionOf = (binary: string | undefined) => (binary ? execFileSync(binary, ["--version"], { encoding: "utf8" }).trim() : "missing");
  if (args.node) return `Node ${versionOf(nodeBinary(Number(args.node)))} (every row: --node=${args.node})`;
  const others = [...new Set(LOAD_SCENARIOS.map((s) => s.node).filter((n): n is number => n !== undefined && n !== ownMajor))];
  return [`Node ${process.version}`, ...others.map((n) => `rows "on Node ${n}": ${versionOf(nodeBinary(n))}`)].join(", ");
}

async function natsServerVersion(): Promise<string> {
  try {
    const { connect } = await import("@nats-io/transport-node");
    const nc = await connect({ servers: `127.0.0.1:${NATS_PORT}`, timeout: 1000 });
    const v = nc.info?.version ?? "?";
    await nc.close();
    return v;
  } catch {
    return "unreachable";
  }
}

const int = (n: number) => Math.round(n).toLocaleString("en-US");
const ms = (n: number) => n.toFixed(2);
const pct = (n: number) => `${Math.round(n)}%`;

function table(
  rows: Map<string, Row>,
  measured: Map<string, Measured>,
  codecRows: CodecRow[],
  idle: ReadonlyArray<readonly [label: string, rss: number | Error]>,
): string {
  const lines: string[][] = [["scenario", "ops/s", "p50 ms", "p99 ms", "cpu client", "cpu server", "vs anchors (ops/s ratio)"]];
  const section = (title: string) => lines.push([title]);
  const groups: Array<[LoadScenario["group"], string]> = [
    ["rpc", `RPC echo {"name":"davie"} → {"msg":"Hello davie"}`],
    ["pubsub", `Pub/sub, 200-byte events (client = publisher, server = subscriber)`],
    ["scale", "How cost grows (tsmicro's defaults; MB/s = request + response bodies)"],
    ["soak", `Soak: tsmicro's defaults at full load, RSS growth over ${soakTiming.windowMs / 1000} s in which V8's young generation did not grow (after ${soakTiming.warmupMs / 1000} s of warm-up or more)`],
  ];
  for (const [group, title] of groups) {
    const inGroup = [...rows.values()].filter((r) => r.scenario.group === group);
    if (inGroup.length === 0) continue;
    section(title);
    for (const { scenario: s, result: r, skipped, failed } of inGroup) {
      const label = `  ${s.label}`;
      if (!r) {
        lines.push([label, "0", "-", "-", "-", "-", skipped ?? failed ?? "no result"]);
        continue;
      }
      const throughput = s.bytesPerOp ? [`${((r.ops * s.bytesPerOp) / 1e6).toFixed(1)} MB/s`] : [];
      const mb = (b: number) => `${b >= 0 ? "+" : ""}${(b / 2 ** 20).toFixed(1)} MB`;
      if (s.group === "soak") {
        const young = r.youngGenerationGrew ? ", young generation grew in it" : "";
        throughput.push(`RSS ${mb(r.rssGrowthClient)} client, ${mb(r.rssGrowthServer)} server`, `window from ${Math.round(r.warmupMs / 1000)} s${young}`);
      }
      const ratios = (s.anchors ?? []).map((a) => {
        const anchor = measured.get(a)?.ops;
        const name = LOAD_SCENARIOS.find((x) => x.id === a)!.short;
        return anchor ? `${(r.ops / anchor).toFixed(2)}× ${name}` : `– ${name}`;
      });
      const notes = [...throughput, ...ratios].join(" · ");
      lines.push([label, int(r.ops), ms(r.p50), ms(r.p99), pct(r.cpuClient), pct(r.cpuServer), notes]);
    }
  }
  if (codecRows.length > 0) {
    section("Codec: the seed's Student {name, classes, grade, phone}, in one process");
    for (const r of codecRows) lines.push([`  ${r.codec}`, `${r.bytes} bytes · encode ${int(r.encodePerSec)}/s · decode ${int(r.decodePerSec)}/s`]);
  }
  if (idle.length > 0) {
    section("Idle process RSS (after start-up, settled)");
    for (const [label, rss] of idle) lines.push([`  ${label}`, rss instanceof Error ? `failed: ${rss.message.split("\n")[0]}` : `${(rss / 2 ** 20).toFixed(1)} MB`]);
  }
  if (args.smoke) return format(lines); // a second per scenario says nothing about the goals
  section("Goals");
  for (const goal of GOALS) {
    const outcome = goal.check(measured);
    lines.push([`  ${outcome ? (outcome.met ? "✓" : "✗") : "–"} ${goal.text}`, outcome?.figure ?? "not measured"]);
  }
  return format(lines);
}

/** Aligns cells in columns (numbers right, text left); one-cell rows are section titles, two-cell rows a label and free text. */
function format(lines: string[][]): string {
  const widths: number[] = [];
  for (const cells of lines) {
    const measuredCells = cells.length > 2 ? cells : cells.length === 2 ? cells.slice(0, 1) : [];
    measuredCells.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  }
  const numeric = (i: number) => i > 0 && i < 6;
  return (
    lines
      .map((cells) => {
        if (cells.length === 1) return cells[0]!;
        if (cells.length === 2) return `${cells[0]!.padEnd(widths[0]!)}  ${cells[1]}`;
        return cells
          .map((c, i) => (i === cells.length - 1 ? c : numeric(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
          .join("  ");
      })
      .join("\n") + "\n"
  );
}

await main();
