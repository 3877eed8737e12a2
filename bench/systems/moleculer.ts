/**
 * Moleculer's roles, over its TCP transporter (loopback only) and over NATS, for one installed
 * release: 0.14 ("moleculer", this file's roles) or 0.15 ("moleculer-0.15", needs Node ≥ 22;
 * moleculer-015.ts).
 *
 * The TCP transporter is held to loopback: UDP discovery (multicast/broadcast) is off, nodes are
 * the static urls on 127.0.0.1, the listener binds 127.0.0.1 (stock Moleculer binds every
 * interface), and nodes are always dialled on 127.0.0.1, never on the hostname or LAN address
 * that gossip carries.
 */
import net from "node:net";
import path from "node:path";
import { createRequire } from "node:module";
import type MoleculerModule from "moleculer";
import { EVENT_BYTES, publishOp, receipts, type SubscriberInfo } from "../pubsub.ts";
import { nowMs, Recorder } from "../recorder.ts";
import type { RoleContext, Roles } from "../role.ts";
import { ECHO_REQUEST, checkEchoResponse, hello, type EchoRequest } from "./echo.ts";

const NATS_URL = "nats://127.0.0.1:4222";

/** The parts of Moleculer's (untyped) TCP reader and transporter internals used here. */
interface TcpReaderInternals {
  opts: { port: number | null };
  server: net.Server | null;
  connected: boolean;
  onTcpClientConnected(socket: net.Socket): void;
}
interface TcpTransporterInternals {
  opts: Record<string, unknown>;
  nodes: { disconnected(nodeID: string, unexpected: boolean): void };
  writer: { on(event: string, listener: (...args: unknown[]) => void): void };
  reader: { listen(): Promise<number> };
}
type ReaderClass = new (transporter: unknown, opts: unknown) => TcpReaderInternals;
type WriterClass = new (transporter: unknown, opts: unknown) => TcpTransporterInternals["writer"];

/** The roles of the Moleculer release installed as package pkg (0.15's types are taken to be 0.14's where used here). */
export function moleculerRoles(pkg: "moleculer" | "moleculer-0.15"): Roles {
  // Moleculer's package exports hide its internals: load them by file path.
  const require = createRequire(import.meta.url);
  const Moleculer = require(pkg) as typeof MoleculerModule;
  const tcpDir = path.join(path.dirname(require.resolve(pkg)), "src/transporters/tcp");
  const TcpReader = require(path.join(tcpDir, "tcp-reader.js")) as ReaderClass;
  const TcpWriter = require(path.join(tcpDir, "tcp-writer.js")) as WriterClass;

  class LoopbackTcpReader extends TcpReader {
    listen(): Promise<number> {
      return new Promise((resolve, reject) => {
        const server = net.createServer((socket) => this.onTcpClientConnected(socket));
        server.once("error", reject);
        server.listen({ host: "127.0.0.1", port: this.opts.port ?? 0, exclusive: true }, () => {
          this.opts.port = (server.address() as net.AddressInfo).port;
          this.connected = true;
          resolve(this.opts.port);
        });
        this.server = server;
      });
    }
  }

  class LoopbackTcpTransporter extends Moleculer.Transporters.TCP {
    /** Mirrors TcpTransporter.startTcpServer, with the reader bound to loopback. */
    startTcpServer(): Promise<number> {
      const self = this as unknown as TcpTransporterInternals;
      self.writer = new TcpWriter(this, self.opts);
      self.reader = new LoopbackTcpReader(this, self.opts) as unknown as TcpTransporterInternals["reader"];
      self.writer.on("error", (_err, nodeID) => self.nodes.disconnected(nodeID as string, false));
      self.writer.on("end", (nodeID) => self.nodes.disconnected(nodeID as string, false));
      return self.reader.listen();
    }

    getNodeAddress(): string {
      return "127.0.0.1";
    }
  }

  /** The reserved ports are the server's, then the client's (an idle node has only its own). */
  function tcpTransporter(ctx: RoleContext): MoleculerModule.Transporter {
    const sides = ["server", "client"];
    return new LoopbackTcpTransporter({
      udpDiscovery: false,
      useHostname: false,
      urls: ctx.ports.map((port, i) => `127.0.0.1:${port}/${ctx.namespace}-${sides[i]}`),
    });
  }

  async function startBroker(ctx: RoleContext, side: "server" | "client", transporter: MoleculerModule.Transporter | string, schema?: MoleculerModule.ServiceSchema) {
    const broker = new Moleculer.ServiceBroker({ nodeID: `${ctx.namespace}-${side}`, namespace: ctx.namespace, transporter, logger: false });
    if (schema) broker.createService(schema);
    await broker.start();
    return broker;
  }

  const greeter: MoleculerModule.ServiceSchema = {
    name: "greeter",
    actions: { hello: (ctx: MoleculerModule.Context<EchoRequest>) => hello(ctx.params) },
  };

  async function rpcClient(ctx: RoleContext, transporter: MoleculerModule.Transporter | string) {
    const broker = await startBroker(ctx, "client", transporter);
    await broker.waitForServices("greeter", 10_000);
    const op = () => broker.call("greeter.hello", ECHO_REQUEST);
    checkEchoResponse(await op());
    return { op };
  }

  /** A 200-byte JSON payload carrying its send time. */
  function stampedPayload(): { sent: number; pad: string } {
    const sent = nowMs();
    return { sent, pad: "a".repeat(EVENT_BYTES - JSON.stringify({ sent, pad: "" }).length) };
  }

  return {
    "tcp-server": async (ctx) => {
      await startBroker(ctx, "server", tcpTransporter(ctx), greeter);
      return {};
    },
    "tcp-client": (ctx) => rpcClient(ctx, tcpTransporter(ctx)),
    "nats-server": async (ctx) => {
      await startBroker(ctx, "server", NATS_URL, greeter);
      return {};
    },
    "nats-client": (ctx) => rpcClient(ctx, NATS_URL),
    "nats-subscriber": async (ctx) => {
      const recorder = new Recorder();
      const credits = await receipts(recorder);
      await startBroker(ctx, "server", NATS_URL, {
        name: "listener",
        // context: true, or Moleculer guesses the legacy (payload, sender) signature from the parameter name.
        events: { "bench.event": { context: true, handler: (ctx: MoleculerModule.Context<{ sent: number }>) => credits.received(ctx.params.sent) } },
      });
      return { info: { creditPort: credits.port } satisfies SubscriberInfo, recorder };
    },
    "nats-publisher": async (ctx) => {
      const broker = await startBroker(ctx, "client", NATS_URL);
      await broker.waitForServices("listener", 10_000);
      return { op: await publishOp(ctx.peer as SubscriberInfo, () => broker.emit("bench.event", stampedPayload())) };
    },
    /** A node as users start one: one action, the loopback TCP transporter. */
    idle: async (ctx) => {
      await startBroker(ctx, "server", tcpTransporter(ctx), greeter);
      return {};
    },
  };
}

export const roles = moleculerRoles("moleculer");
