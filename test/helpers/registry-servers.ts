/**
 * Registry servers a test owns: etcd, ZooKeeper, nats-server and Consul processes on free loopback
 * ports (to stop and restart them), and a DNS server on a loopback UDP port whose records a test edits.
 */
import { execFileSync } from "node:child_process";
import dgram from "node:dgram";
import net from "node:net";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import dnsPacket from "dns-packet";
import { freePort, startProcess, waitForPort, waitUntil, type Proc } from "./net.ts";

/** A server process that can be stopped and started again on the same port with the same data. */
export interface OwnedServer {
  /** host:port for clients. */
  readonly address: string;
  start(): Promise<void>;
  /** SIGTERM, then SIGKILL if it lingers; resolves once the process is gone. */
  stop(): Promise<void>;
  /** Stops it and removes its data. */
  dispose(): Promise<void>;
}

/** Absolute path of an executable on PATH (or at one of the given places), or undefined. */
export function findExecutable(name: string, ...candidates: string[]): string | undefined {
  for (const c of candidates) if (existsSync(c)) return c;
  try {
    return execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export const ETCD_BIN = () => findExecutable("etcd");
export const ZK_SERVER_SCRIPT = () => findExecutable("zkServer.sh", "/usr/share/zookeeper/bin/zkServer.sh", "/opt/zookeeper/bin/zkServer.sh");
export const NATS_SERVER_BIN = () => findExecutable("nats-server");
/** Consul is built from source by .ci/setup/consul.sh and linked into the cache's bin folder. */
export const CONSUL_BIN = () => findExecutable("consul", path.join(process.env.TSMICRO_CACHE_DIR ?? "/var/cache/tsmicro", "bin", "consul"));

interface OwnedServerOptions {
  name: string;
  port: number;
  dataDir: string;
  spawn: () => Proc;
  startupMs: number;
  /** Resolves once the server, already listening, can serve (by the startup deadline). */
  ready?: (deadline: number) => Promise<void>;
}

function ownedServer(opts: OwnedServerOptions): OwnedServer {
  let proc: Proc | undefined;
  const stop = async () => {
    if (!proc) return;
    const p = proc;
    proc = undefined;
    p.signal("SIGTERM");
    try {
      await p.exited(10_000);
    } catch {
      p.signal("SIGKILL");
      await p.exited(5_000);
    }
  };
  return {
    address: `127.0.0.1:${opts.port}`,
    async start() {
      if (proc) return;
      const p = opts.spawn();
      proc = p;
      const deadline = Date.now() + opts.startupMs;
      try {
        await waitForPort(opts.port, opts.startupMs);
        await opts.ready?.(deadline);
      } catch (err) {
        await stop();
        throw new Error(`${opts.name} did not start: ${(err as Error).message}\n${p.stdout().slice(-1500)}${p.stderr().slice(-1500)}`);
      }
    },
    stop,
    async dispose() {
      await stop();
      rmSync(opts.dataDir, { recursive: true, force: true });
    },
  };
}

const tempDir = (name: string) => mkdtempSync(path.join(tmpdir(), `tsmicro-${name}-`));

export async function startEtcd(): Promise<OwnedServer> {
  const bin = ETCD_BIN();
  if (!bin) throw new Error("etcd is not installed");
  const [port, peerPort] = [await freePort(), await freePort()];
  const dataDir = tempDir("etcd");
  const peer = `http://127.0.0.1:${peerPort}`;
  const server = ownedServer({
    name: "etcd",
    port,
    dataDir,
    startupMs: 20_000,
    spawn: () =>
      startProcess(bin, [
        "--name=test",
        `--data-dir=${dataDir}/data`,
        `--listen-client-urls=http://127.0.0.1:${port}`,
        `--advertise-client-urls=http://127.0.0.1:${port}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=test=${peer}`,
      ]),
    // The port opens before etcd has elected itself leader (after a restart, too): /health says when it serves.
    ready: (deadline) =>
      waitUntil(
        async () => {
          const res = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
          return !!res?.ok && ((await res.json()) as { health?: string }).health === "true";
        },
        Math.max(0, deadline - Date.now()),
        "etcd to serve",
        100,
      ),
  });
  await server.start();
  return server;
}

export async function startZookeeper(): Promise<OwnedServer> {
  const script = ZK_SERVER_SCRIPT();
  if (!script) throw new Error("zookeeper is not installed");
  const port = await freePort();
  const dataDir = tempDir("zookeeper");
  const config = path.join(dataDir, "zoo.cfg");
  // Short ticks and a wide session range, so a session can be as short as a test's TTL.
  writeFileSync(
    config,
    [
      `dataDir=${dataDir}/data`,
      `clientPort=${port}`,
      "clientPortAddress=127.0.0.1",
      "tickTime=500",
      "minSessionTimeout=1000",
      "maxSessionTimeout=300000",
      "admin.enableServer=false",
    ].join("\n"),
  );
  const server = ownedServer({
    name: "zookeeper",
    port,
    dataDir,
    startupMs: 30_000,
    // JMXDISABLE: JMX would listen on every interface.
    spawn: () => startProcess(script, ["start-foreground", config], { env: { ...process.env, JMXDISABLE: "true", ZOO_LOG_DIR: dataDir } }),
    // The port opens before the database is loaded; "srvr" names the mode once it serves.
    ready: (deadline) => waitUntil(async () => (await fourLetterWord(port, "srvr")).includes("Mode:"), Math.max(0, deadline - Date.now()), "zookeeper to serve", 100),
  });
  await server.start();
  return server;
}

/** ZooKeeper's answer to a four-letter command ("" if the connection fails). */
function fourLetterWord(port: number, word: string): Promise<string> {
  return new Promise((resolve) => {
    let answer = "";
    const socket = net.connect(port, "127.0.0.1", () => socket.end(word));
    socket.setTimeout(2000, () => socket.destroy());
    socket.on("data", (chunk: Buffer) => (answer += chunk.toString()));
    socket.on("error", () => undefined);
    socket.on("close", () => resolve(answer));
  });
}

export async function startNatsServer(): Promise<OwnedServer> {
  const bin = NATS_SERVER_BIN();
  if (!bin) throw new Error("nats-server is not installed");
  const port = await freePort();
  const dataDir = tempDir("nats");
  const server = ownedServer({ name: "nats-server", port, dataDir, startupMs: 10_000, spawn: () => startProcess(bin, ["-a", "127.0.0.1", "-p", String(port)]) });
  await server.start();
  return server;
}

/**
 * A Consul agent with its HTTP API, server RPC and Serf ports on free loopback ports, DNS and gRPC
 * off; start() resolves once it has elected itself leader. By default in dev mode (a single server,
 * state in memory); `persistent` makes it a single server that keeps its catalog and its agent's
 * services and checks in the data directory, so a restart comes back with them.
 */
export async function startConsul({ persistent = false } = {}): Promise<OwnedServer> {
  const bin = CONSUL_BIN();
  if (!bin) throw new Error("consul is not installed (.ci/setup/consul.sh builds it)");
  const [port, serverPort, serfLan, serfWan] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const dataDir = tempDir("consul");
  const server = ownedServer({
    name: "consul",
    port,
    dataDir,
    startupMs: 30_000,
    spawn: () =>
      startProcess(bin, [
        "agent",
        ...(persistent ? ["-server", "-bootstrap-expect=1"] : ["-dev"]),
        "-node=tsmicro-test",
        `-data-dir=${dataDir}`,
        "-bind=127.0.0.1",
        "-client=127.0.0.1",
        `-http-port=${port}`,
        `-server-port=${serverPort}`,
        `-serf-lan-port=${serfLan}`,
        `-serf-wan-port=${serfWan}`,
        "-dns-port=-1",
        "-grpc-port=-1",
        "-grpc-tls-port=-1",
      ]),
    ready: (deadline) =>
      waitUntil(
        async () => {
          const res = await fetch(`http://127.0.0.1:${port}/v1/status/leader`).catch(() => undefined);
          return !!res?.ok && ((await res.json()) as string) !== "";
        },
        Math.max(0, deadline - Date.now()),
        "consul to elect a leader",
        100,
      ),
  });
  await server.start();
  return server;
}

/** The registry servers a test can own, by registry name: how to start one, and whether its binary is here. */
export const OWNABLE_REGISTRY_SERVERS: Record<"etcd" | "zookeeper" | "nats" | "consul", { start: () => Promise<OwnedServer>; installed: () => boolean }> = {
  etcd: { start: startEtcd, installed: () => !!ETCD_BIN() },
  zookeeper: { start: startZookeeper, installed: () => !!ZK_SERVER_SCRIPT() },
  nats: { start: startNatsServer, installed: () => !!NATS_SERVER_BIN() },
  consul: { start: startConsul, installed: () => !!CONSUL_BIN() },
};

export interface SrvTarget {
  target: string;
  port: number;
}

/** Records the DNS server answers with; edit them between queries. Names are fully qualified without the trailing dot. */
export interface DnsRecords {
  srv: Map<string, SrvTarget[]>;
  a: Map<string, string[]>;
  aaaa: Map<string, string[]>;
}

export interface TestDnsServer {
  /** 127.0.0.1:port, for a resolver's server list. */
  readonly address: string;
  readonly records: DnsRecords;
  /** Queries answered so far. */
  readonly queries: number;
  close(): Promise<void>;
}

const NXDOMAIN = 3;

/** An authoritative DNS server on a loopback UDP port: SRV, A and AAAA from `records`, NXDOMAIN for unknown names. */
export async function startDnsServer(): Promise<TestDnsServer> {
  const records: DnsRecords = { srv: new Map(), a: new Map(), aaaa: new Map() };
  const socket = dgram.createSocket("udp4");
  let queries = 0;
  socket.on("message", (msg, rinfo) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    queries++;
    const answers: dnsPacket.Answer[] = [];
    let known = false;
    for (const q of query.questions ?? []) {
      const name = q.name.replace(/\.$/, "").toLowerCase();
      known ||= records.srv.has(name) || records.a.has(name) || records.aaaa.has(name);
      if (q.type === "SRV")
        for (const t of records.srv.get(name) ?? []) answers.push({ type: "SRV", name: q.name, ttl: 5, data: { target: t.target, port: t.port, priority: 0, weight: 0 } });
      if (q.type === "A") for (const ip of records.a.get(name) ?? []) answers.push({ type: "A", name: q.name, ttl: 5, data: ip });
      if (q.type === "AAAA") for (const ip of records.aaaa.get(name) ?? []) answers.push({ type: "AAAA", name: q.name, ttl: 5, data: ip });
    }
    const flags = dnsPacket.AUTHORITATIVE_ANSWER | (known ? 0 : NXDOMAIN);
    socket.send(dnsPacket.encode({ type: "response", id: query.id, flags, questions: query.questions, answers }), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => resolve());
  });
  return {
    address: `127.0.0.1:${socket.address().port}`,
    records,
    get queries() {
      return queries;
    },
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
