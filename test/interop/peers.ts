/**
 * The go-micro peers (test/interop/go/<version>/main.go) as child processes, and the interop
 * matrix: each case records its cell, `npm run test:interop` prints them after the run.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, readFileSync, existsSync } from "node:fs";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

/** go-micro's settings for the etcd CI runs on loopback. */
export const ETCD_FOR_GO = { MICRO_REGISTRY: "etcd", MICRO_REGISTRY_ADDRESS: "127.0.0.1:2379" };

export const GO_MICRO_VERSIONS = ["v4", "v5"] as const;
export type GoMicroVersion = (typeof GO_MICRO_VERSIONS)[number];
/** What each peer is built against (its go.mod). */
export const VERSION_LABEL: Record<GoMicroVersion, string> = { v4: "go-micro v4.11.0", v5: "go-micro v5.30.0" };

const BUILD = fileURLToPath(new URL("./go/build.sh", import.meta.url));

let binDir: string | undefined;
/** The peers' folder: CI's setup exports it; a developer's first run builds it (cached). */
function peerBinary(version: GoMicroVersion): string {
  binDir ??= process.env.TSMICRO_INTEROP_BIN || execFileSync("bash", [BUILD], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: 20 * 60_000 }).trim();
  return `${binDir}/peer-${version}`;
}

export type PeerLine = Record<string, any>;

/** A running peer: its stdout as JSON lines (other lines as {text}), awaited one by one. */
export class Peer {
  private readonly lines: PeerLine[] = [];
  private waiters: (() => void)[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;

  constructor(readonly version: string, readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on("line", (text) => {
      let line: PeerLine;
      try {
        line = JSON.parse(text) as PeerLine;
        if (typeof line !== "object" || line === null) line = { text };
      } catch {
        line = { text };
      }
      this.lines.push(line);
      for (const w of this.waiters.splice(0)) w();
    });
    createInterface({ input: proc.stderr! }).on("line", (text) => {
      this.stderr.push(text);
      if (this.stderr.length > 200) this.stderr.shift();
    });
    this.exited = once(proc, "exit").then(([code]) => {
      for (const w of this.waiters.splice(0)) w();
      return code as number | null;
    });
  }

  /** The next line (in order) that matches, within timeoutMs. */
  async next(match: (line: PeerLine) => boolean, timeoutMs = 15_000, what = "a line"): Promise<PeerLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex(match);
      if (i >= 0) return this.lines.splice(i, 1)[0]!;
      const fatal = this.lines.find((l) => l.fatal);
      if (fatal) throw new Error(`${this.version} peer failed: ${fatal.fatal}`);
      if (this.proc.exitCode !== null || Date.now() >= deadline) {
        throw new Error(`${this.version} peer: no ${what} within ${timeoutMs}ms (exit ${this.proc.exitCode}); stderr:\n${this.stderr.slice(-15).join("\n")}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** SIGTERM (the peer deregisters), SIGKILL if it does not exit within 5 s. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill(signal);
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Starts a peer; env holds PEER_* and go-micro's MICRO_* settings. go-micro listens on every
 * interface and advertises a private address unless told otherwise: its server and http broker
 * are pinned to loopback. Its default registry, mdns, multicasts on every interface: a peer uses
 * etcd unless told otherwise (mdns only ever inside a network namespace of the test's own).
 */
export function startPeer(version: GoMicroVersion, env: Record<string, string>, netns?: string): Peer {
  const base = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", MICRO_LOG_LEVEL: "warn", MICRO_SERVER_ADDRESS: "127.0.0.1:0", MICRO_BROKER_ADDRESS: "127.0.0.1:0" };
  const registry = env.MICRO_REGISTRY ? {} : ETCD_FOR_GO;
  const [command, args] = inNetns(netns, peerBinary(version), []);
  const proc = spawn(command, args, { env: { ...base, ...registry, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  return new Peer(version, proc);
}

/** The command line that runs command inside the network namespace netns (ip netns exec execs it: same pid). */
export function inNetns(netns: string | undefined, command: string, args: string[]): [string, string[]] {
  return netns ? ["ip", ["netns", "exec", netns, command, ...args]] : [command, args];
}

/** Runs a peer to its result line (the first with one of the keys). */
export async function runPeer(version: GoMicroVersion, env: Record<string, string>, keys: string[], timeoutMs = 20_000, netns?: string): Promise<PeerLine> {
  const peer = startPeer(version, env, netns);
  try {
    return await peer.next((l) => keys.some((k) => k in l), timeoutMs, `result (${keys.join("/")})`);
  } finally {
    await peer.stop("SIGKILL");
  }
}

// ---- the matrix -------------------------------------------------------------------------------

/** Cells are appended here (one JSON line each) by every test process; the printer reads them. */
export const MATRIX_FILE = process.env.TSMICRO_INTEROP_MATRIX ?? "";

export interface Cell {
  row: string;
  version: GoMicroVersion;
  direction: string;
  pass: boolean;
}

/** A test that is also a matrix cell: row (registry/broker), go-micro version, direction. */
export function cell(row: string, version: GoMicroVersion, direction: string, fn: () => Promise<void>, name = ""): void {
  test(`${row} · ${VERSION_LABEL[version]} · ${direction}${name ? ` · ${name}` : ""}`, async () => {
    let pass = false;
    try {
      await fn();
      pass = true;
    } finally {
      if (MATRIX_FILE) appendFileSync(MATRIX_FILE, JSON.stringify({ row, version, direction, pass } satisfies Cell) + "\n");
    }
  });
}

/** The matrix as text: one line per row × version × direction (a direction fails if any case of it failed). */
export function formatMatrix(file: string): string {
  if (!existsSync(file)) return "interop matrix: no cells recorded";
  const cells = new Map<string, Cell>();
  for (const text of readFileSync(file, "utf8").split("\n")) {
    if (!text) continue;
    const c = JSON.parse(text) as Cell;
    const key = `${c.row}\u0000${c.version}\u0000${c.direction}`;
    const seen = cells.get(key);
    cells.set(key, { ...c, pass: c.pass && (seen?.pass ?? true) });
  }
  const rows = [...cells.values()].sort((a, b) => a.row.localeCompare(b.row) || a.version.localeCompare(b.version) || a.direction.localeCompare(b.direction));
  const widths = [Math.max(17, ...rows.map((r) => r.row.length)), 16, Math.max(9, ...rows.map((r) => r.direction.length))];
  const line = (cols: string[]) => cols.map((c, i) => (i < widths.length ? c.padEnd(widths[i]!) : c)).join("  ");
  const out = ["interop matrix", line(["registry/broker", "go-micro", "direction", "result"])];
  for (const r of rows) out.push(line([r.row, VERSION_LABEL[r.version].replace("go-micro ", ""), r.direction, r.pass ? "pass" : "FAIL"]));
  const failed = rows.filter((r) => !r.pass).length;
  out.push(`interop: ${rows.length - failed} passed, ${failed} failed`);
  return out.join("\n");
}
