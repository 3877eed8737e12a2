/**
 * Broker servers of a test's own — nats-server, mosquitto, redis-server, rabbitmq-server, Kafka,
 * nsqd, the Pub/Sub emulator — on free loopback ports with their data in a temporary directory, so
 * tests can restart them without touching the shared servers. Each is a process we started and end by PID.
 */
import { spawnSync } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import path from "node:path";
import { freePort, freePortPair, startProcess, waitForPort, type Proc } from "./net.ts";

export interface OwnServer {
  /** host:port */
  readonly address: string;
  /** Stops the server gracefully (SIGTERM) and starts it again on the same port with the same data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Whether a server command (a name on PATH or a path) can be run here. */
export function isInstalled(command: string): boolean {
  return spawnSync("sh", ["-c", 'command -v "$0"', command], { stdio: "ignore" }).status === 0;
}

interface ServerSpec {
  command: string;
  /** Picks the port the server listens on (default: a free one). */
  port?(): Promise<number>;
  args(port: number, dir: string): string[];
  env?(port: number, dir: string): NodeJS.ProcessEnv;
  /** Writes config files into the data directory before the first start. */
  prepare?(port: number, dir: string): Promise<void>;
  /** RabbitMQ's Erlang VM ends when its stdin closes: holding it open ties the server to this process. */
  holdStdin?: boolean;
  startTimeoutMs: number;
}

async function startOwnServer(name: string, spec: ServerSpec): Promise<OwnServer> {
  const port = await (spec.port ?? freePort)();
  const dir = await mkdtemp(path.join(tmpdir(), `tsmicro-${name}-`));
  await spec.prepare?.(port, dir);
  const launch = async (): Promise<Proc> => {
    const proc = startProcess(spec.command, spec.args(port, dir), {
      cwd: dir,
      env: { ...process.env, ...spec.env?.(port, dir) },
      stdio: [spec.holdStdin ? "pipe" : "ignore", "pipe", "pipe"],
    });
    try {
      await waitForPort(port, spec.startTimeoutMs);
    } catch (err) {
      proc.signal("SIGKILL");
      throw new Error(`${name} did not start on port ${port}: ${(err as Error).message}; stderr: ${proc.stderr().slice(-1500)}`);
    }
    return proc;
  };
  // A server that does not finish a graceful stop in time is killed, never left running.
  const shutdown = async (proc: Proc) => {
    proc.signal("SIGTERM");
    try {
      await proc.exited(30_000);
    } catch {
      proc.signal("SIGKILL");
      await proc.exited(5_000);
    }
  };
  let proc: Proc | undefined = await launch();
  return {
    address: `127.0.0.1:${port}`,
    async restart() {
      if (proc) await shutdown(proc);
      proc = await launch();
    },
    async stop() {
      if (proc) await shutdown(proc);
      proc = undefined;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function startNats(): Promise<OwnServer> {
  return startOwnServer("nats", {
    command: "nats-server",
    args: (port, dir) => ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir],
    startTimeoutMs: 15_000,
  });
}

export function startMosquitto(): Promise<OwnServer> {
  return startOwnServer("mosquitto", {
    command: "mosquitto",
    prepare: (port, dir) =>
      // Persistence on: durable sessions and their queued messages survive the restart case. Started
      // as root, Mosquitto would switch to its own user, which cannot write to our temp directory.
      writeFile(
        path.join(dir, "mosquitto.conf"),
        `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/\nuser ${userInfo().username}\n`,
      ),
    args: (_port, dir) => ["-c", path.join(dir, "mosquitto.conf")],
    startTimeoutMs: 15_000,
  });
}

/** Redis with every write fsynced to the append-only file, so acknowledged messages survive a restart. */
export function startRedis(): Promise<OwnServer> {
  return startOwnServer("redis", {
    command: "redis-server",
    args: (port, dir) =>
      ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"],
    startTimeoutMs: 15_000,
  });
}

/** The server script itself: /usr/sbin/rabbitmq-server would switch to the rabbitmq user and lose our environment. */
export const RABBITMQ_SERVER_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/**
 * A second RabbitMQ node: its own node name, AMQP and distribution ports, config, data and logs,
 * all bound to loopback, registered with the machine's epmd (started on loopback if none runs).
 * The Erlang shell is kept on our stdin (RABBITMQ_ALLOW_INPUT) so the spawned PID is the VM
 * itself, SIGTERM stops it gracefully, and it ends with this process if the test dies.
 */
export function startRabbitMQ(): Promise<OwnServer> {
  let distPort = 0;
  return startOwnServer("rabbitmq", {
    command: RABBITMQ_SERVER_SCRIPT,
    async prepare(port, dir) {
      distPort = await freePort();
      await writeFile(path.join(dir, "rabbitmq.conf"), `listeners.tcp.1 = 127.0.0.1:${port}\n`);
      await writeFile(path.join(dir, "rabbitmq-env.conf"), "ERL_EPMD_ADDRESS=127.0.0.1\n");
      await writeFile(path.join(dir, "enabled_plugins"), "[].\n");
      await writeFile(path.join(dir, ".erlang.cookie"), `tsmicro-test-${port}`);
      await chmod(path.join(dir, ".erlang.cookie"), 0o400);
    },
    args: () => [],
    env: (port, dir) => ({
      HOME: dir,
      RABBITMQ_NODENAME: `tsmicro-test-${port}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_CONF_ENV_FILE: path.join(dir, "rabbitmq-env.conf"),
      RABBITMQ_CONFIG_FILE: path.join(dir, "rabbitmq.conf"),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, "enabled_plugins"),
      RABBITMQ_MNESIA_BASE: path.join(dir, "mnesia"),
      RABBITMQ_LOG_BASE: path.join(dir, "log"),
      RABBITMQ_LOGS: path.join(dir, "log", "rabbit.log"),
      RABBITMQ_ALLOW_INPUT: "true",
      ERL_EPMD_ADDRESS: "127.0.0.1",
      ERL_FLAGS: "-kernel inet_dist_use_interface {127,0,0,1}",
    }),
    holdStdin: true,
    startTimeoutMs: 60_000,
  });
}

/** Where .ci/setup/nsq.sh links the nsqd it builds. */
export const NSQD = path.join(process.env.TSMICRO_CACHE_DIR ?? "/var/cache/tsmicro", "bin", "nsqd");

/**
 * nsqd with its HTTP API on the next port (where the nsq broker looks for it), HTTPS off, and the
 * shared server's message size limit (.ci/setup/nsq.sh): the suite sends 1 MiB bodies with headers.
 */
export function startNsqd(): Promise<OwnServer> {
  return startOwnServer("nsqd", {
    command: NSQD,
    port: freePortPair,
    args: (port, dir) => [
      `--tcp-address=127.0.0.1:${port}`,
      `--http-address=127.0.0.1:${port + 1}`,
      "--https-address=",
      "--broadcast-address=127.0.0.1",
      `--data-path=${dir}`,
      `--max-msg-size=${4 * 1024 * 1024}`,
    ],
    startTimeoutMs: 15_000,
  });
}

/** The Pub/Sub emulator's launcher, linked there by .ci/setup/pubsub.sh (it comes with the Google Cloud CLI). */
export const PUBSUB_EMULATOR = path.join(process.env.TSMICRO_CACHE_DIR ?? "/var/cache/tsmicro", "bin", "cloud-pubsub-emulator");

/** The Pub/Sub emulator (a JVM: the launcher execs java, so SIGTERM reaches it). It keeps its state in memory: a restart empties it. */
export function startPubSubEmulator(): Promise<OwnServer> {
  return startOwnServer("pubsub", {
    command: PUBSUB_EMULATOR,
    args: (port) => ["--host=127.0.0.1", `--port=${port}`],
    startTimeoutMs: 90_000,
  });
}

/**
 * Apache Kafka's launcher, which .ci/setup/kafka.sh installs with the Kafka jars it caches:
 * `kafka-server DIR PORT CONTROLLER_PORT` (test/engines/kafka/kafka-server.sh).
 */
export const KAFKA_SERVER = path.join(process.env.TSMICRO_CACHE_DIR ?? "/var/cache/tsmicro", "bin", "kafka-server");

/** A single Kafka node (KRaft: broker and its own controller); only warnings and errors are logged. */
export function startKafka(): Promise<OwnServer> {
  let controllerPort = 0;
  return startOwnServer("kafka", {
    command: KAFKA_SERVER,
    async prepare() {
      controllerPort = await freePort();
    },
    args: (port, dir) => [dir, String(port), String(controllerPort)],
    env: () => ({ KAFKA_LOG_LEVEL: "WARN" }),
    startTimeoutMs: 90_000,
  });
}
