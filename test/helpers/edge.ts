/** Plumbing of the edge tests: a node in another process (fixtures/edge-node.ts) and raw exchanges with it. */
import net from "node:net";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseHostPort } from "../../src/address.ts";
import { Client } from "../../src/client/client.ts";
import MemoryRegistry from "../../src/registry/memory.ts";
import { startTs, within, type Proc } from "./net.ts";

const FIXTURE = fileURLToPath(new URL("../e2e/fixtures/edge-node.ts", import.meta.url));

export interface EdgeNode {
  proc: Proc;
  rpc: { host: string; port: number; address: string };
  broker: { host: string; port: number; address: string };
  /** The subscription's delivery path on the broker port ("/?id=<subscriber node id>"). */
  subPath: string;
  stop(): Promise<void>;
}

/** Starts the edge node; extra are server and broker options (milliseconds, bytes). */
export async function startEdgeNode(extra: Record<string, number> = {}): Promise<EdgeNode> {
  const proc = startTs(FIXTURE, [JSON.stringify(extra)], { env: { ...process.env, MICRO_LOG_LEVEL: "error" } });
  const line = await proc.waitForLine(/^ready /, 30_000);
  const [, rpc, broker, sub] = /rpc=(\S+) broker=(\S+) sub=(\S+)/.exec(line)!;
  return {
    proc,
    rpc: { ...parseHostPort(rpc!), address: rpc! },
    broker: { ...parseHostPort(broker!), address: broker! },
    subPath: `/${sub}`,
    async stop() {
      proc.signal("SIGKILL");
      await proc.exited();
    },
  };
}

/** Sends raw bytes on a fresh connection and collects everything until the server closes it (bounded). */
export function exchange(port: number, data: string | Buffer, timeoutMs = 10_000): Promise<string> {
  return within(
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const sock = net.connect({ host: "127.0.0.1", port }, () => sock.end(data));
      sock.on("data", (c: Buffer) => chunks.push(c));
      sock.on("error", reject);
      sock.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
    }),
    timeoutMs,
    `a close from port ${port}`,
  );
}

/** A delivery body in go-micro's http broker format, to the edge node's topic. */
export function brokerMessage(header: Record<string, unknown>, body: string | Buffer): string {
  return JSON.stringify({ Header: { ...header, "Micro-Topic": "edge.topic" }, Body: Buffer.from(body).toString("base64") });
}

/** The node's resident set size and its peak, in MiB (Linux /proc). */
export function memoryMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)![1]) / 1024;
  return { rss: kib("VmRSS"), peak: kib("VmHWM") };
}

/** A normal call on both protocols of the RPC port and a normal delivery to the subscriber; throws if any fails. */
export async function assertServing(node: EdgeNode): Promise<void> {
  for (const transport of ["tcp", "http"] as const) {
    const client = new Client({ registry: new MemoryRegistry(), transport, retries: 0, requestTimeout: 5_000 });
    try {
      const res = await client.call("edge", "Greeter.Echo", { ok: transport }, { address: node.rpc.address });
      if (JSON.stringify(res) !== JSON.stringify({ ok: transport })) throw new Error(`echo over ${transport} answered ${JSON.stringify(res)}`);
    } finally {
      await client.close();
    }
  }
  const res = await fetch(`http://${node.broker.address}${node.subPath}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: brokerMessage({ k: "v" }, "event"),
    signal: AbortSignal.timeout(5_000),
  });
  if (res.status !== 200) throw new Error(`delivery to the subscriber answered ${res.status}: ${await res.text()}`);
}
