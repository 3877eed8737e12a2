/** Shared test plumbing: free ports, waiting for servers, and processes we start and end by PID. */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import net from "node:net";
import type { TestContext } from "node:test";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** A free loopback port whose successor is free too, for servers with a second listener on port + 1. */
export async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await freePort();
    if (port < 65_535 && (await canListen(port + 1))) return port;
  }
  throw new Error("found no two free consecutive loopback ports");
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** Loopback answers (or refuses) at once; the bound is for a port that never answers, and is wide because a busy test process sees its events late. */
export function canConnect(port: number, host = "127.0.0.1", timeoutMs = 5_000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

export async function waitForPort(port: number, timeoutMs = 15_000, host = "127.0.0.1"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await canConnect(port, host)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listened on ${host}:${port} within ${timeoutMs} ms`);
}

/** Polls cond until it holds or the deadline passes; the poll is the event source when there is no event. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Rejects with a clear message when p does not settle in time. */
export function within<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
    }),
  ]);
}

/**
 * Skips a test whose server is not reachable, saying why — except under CI=true for servers that
 * CI installs, where a skip would hide a broken setup, so it fails instead.
 */
export function skipOrFail(t: TestContext, reason: string, ciProvides: boolean): void {
  if (ciProvides && process.env.CI === "true") throw new Error(`CI provides this server but it is not usable: ${reason}`);
  console.log(`# SKIPPED: ${reason}`);
  t.skip(reason);
}

export interface Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything written to stdout so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout line matching re (bounded). */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code once the process ends (bounded). */
  exited(timeoutMs?: number): Promise<number | null>;
  signal(sig: NodeJS.Signals): void;
}

const started = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of started) if (c.exitCode === null && c.pid) process.kill(c.pid, "SIGKILL");
});

/** Starts a process we own; it is SIGKILLed by PID if the test process exits first. */
export function startProcess(cmd: string, args: string[], opts: SpawnOptions = {}): Proc {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  if (!child.pid) throw new Error(`could not start ${cmd}`);
  started.add(child);
  let out = "";
  let err = "";
  const lineWaiters: Array<() => void> = [];
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    for (const w of lineWaiters.splice(0)) w();
  });
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      started.delete(child);
      for (const w of lineWaiters.splice(0)) w();
      resolve(code);
    }),
  );
  const pid = child.pid;
  return {
    child,
    pid,
    stdout: () => out,
    stderr: () => err,
    waitForLine(re, timeoutMs = 15_000) {
      const find = () => out.split("\n").find((l) => re.test(l));
      return within(
        new Promise<string>((resolve, reject) => {
          const check = () => {
            const line = find();
            if (line !== undefined) return resolve(line);
            if (child.exitCode !== null || child.signalCode !== null)
              return reject(new Error(`process ${pid} exited before printing ${re}; stderr: ${err.slice(-2000)}`));
            lineWaiters.push(check);
          };
          check();
        }),
        timeoutMs,
        `line ${re} from pid ${pid}; stdout so far: ${out.slice(-1000)} stderr: ${err.slice(-1000)}`,
      );
    },
    exited: (timeoutMs = 15_000) => within(exit, timeoutMs, `exit of pid ${pid}`),
    signal(sig) {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, sig);
    },
  };
}

/** Runs a TypeScript entry point with tsx in a child process. */
export function startTs(file: string, args: string[] = [], opts: SpawnOptions = {}): Proc {
  return startProcess(process.execPath, ["--import", "tsx", file, ...args], opts);
}
