/**
 * Registry outages end cleanly (issue 12, item 5): a service process and clients calling it under
 * load, the registry server stopped for longer than the register TTL and started again on the
 * same port with the same data directory. No call may fail with `not found` (the node stayed
 * alive the whole time), and the node must have re-registered within one register interval of the
 * server being back. Each registry runs its own server on a free loopback port.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, test, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { Client, MicroError, createRegistry, type Registry } from "../../src/index.ts";
import { CacheRegistry } from "../../src/registry/cache.ts";
import { skipOrFail, startTs, waitUntil, type Proc } from "../helpers/net.ts";
import { OWNABLE_REGISTRY_SERVERS, startConsul, type OwnedServer } from "../helpers/registry-servers.ts";

const fixture = fileURLToPath(new URL("./fixtures/echo-service.ts", import.meta.url));

const TTL_S = 4;
const INTERVAL_S = 2;
/**
 * Longer than the TTL: every lease, session and check outlives its TTL while the server is away.
 * OUTAGE_MS lengthens it for a run by hand (e.g. the 20 s etcd outage).
 */
const OUTAGE_MS = Number(process.env.OUTAGE_MS ?? (TTL_S + 2) * 1000);
/** Calls keep going this long after the server is back: past a full TTL, so a lapse would show. */
const AFTER_MS = (TTL_S + INTERVAL_S + 2) * 1000;
/** A renewal is due within one interval; the register round-trip and timer jitter get this much on top. */
const REREGISTER_SLACK_MS = 1000;
const LOAD_LOOPS = 4;

interface Subject {
  name: string;
  start: () => Promise<OwnedServer>;
  installed: () => boolean;
}

const subjects: Subject[] = [
  { name: "etcd", ...OWNABLE_REGISTRY_SERVERS.etcd },
  { name: "zookeeper", ...OWNABLE_REGISTRY_SERVERS.zookeeper },
  { name: "nats", ...OWNABLE_REGISTRY_SERVERS.nats },
  // A Consul server that keeps its state on disk, as a production one does (dev mode would restart empty).
  { name: "consul", ...OWNABLE_REGISTRY_SERVERS.consul, start: () => startConsul({ persistent: true }) },
];

const measurements: string[] = [];
after(() => {
  if (measurements.length) console.log(measurements.map((m) => `MEASURED ${m}`).join("\n"));
});

interface Tally {
  ok: number;
  notFound: number;
  /** Other failures, by message. */
  other: Map<string, number>;
}

/** Calls in LOAD_LOOPS loops until stopped, counting outcomes. */
function load(client: Client, service: string): { tally: Tally; stop: () => Promise<void> } {
  const tally: Tally = { ok: 0, notFound: 0, other: new Map() };
  let running = true;
  const loop = async () => {
    while (running) {
      try {
        await client.call(service, "Echo.Call", { name: "outage" });
        tally.ok++;
      } catch (err) {
        const detail = err instanceof MicroError ? err.detail : (err as Error).message;
        if (/not found/.test(detail)) tally.notFound++;
        else tally.other.set(detail, (tally.other.get(detail) ?? 0) + 1);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const loops = Array.from({ length: LOAD_LOOPS }, loop);
  return {
    tally,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Times (epoch ms) at which the service process logged a successful register. */
function registeredAt(proc: Proc): number[] {
  const times: number[] = [];
  for (const line of proc.stderr().split("\n")) {
    if (!line.includes("Registered node")) continue;
    try {
      times.push((JSON.parse(line) as { time: number }).time);
    } catch {
      /* not a log line */
    }
  }
  return times;
}

const summary = (t: Tally) => `${t.ok} ok, ${t.notFound} not found, other failures: ${JSON.stringify([...t.other])}`;

/** Whether the registry lists the node; false too while it cannot be reached yet. */
async function inRegistry(registry: Registry, service: string, nodeId: string): Promise<boolean> {
  try {
    return (await registry.getService(service)).some((s) => s.nodes.some((n) => n.id === nodeId));
  } catch {
    return false;
  }
}

describe("registry outage under load", { concurrency: 1 }, () => {
  for (const s of subjects) {
    test(`outage: ${s.name} down ${OUTAGE_MS / 1000} s (ttl ${TTL_S} s) and back — no call sees not found, the node re-registers within one interval`, { timeout: 120_000 }, async (t: TestContext) => {
      if (!s.installed()) return skipOrFail(t, `${s.name} server binary not installed`, true);
      const server = await s.start();
      const name = `outage_${s.name}_${randomUUID().slice(0, 8)}`;
      const proc = startTs(fixture, [`--server_name=${name}`, `--registry=${s.name}`, `--registry_address=${server.address}`, `--register_ttl=${TTL_S}`, `--register_interval=${INTERVAL_S}`, "--broker=memory"], {
        env: { ...process.env, MICRO_LOG_LEVEL: "debug" },
      });
      // Two clients: the default one (its cache kept current by the watch) and one whose cache asks the registry every second.
      const watching = await createRegistry(`${s.name}://${server.address}`, { timeout: 1000 });
      const asking = await createRegistry(`${s.name}://${server.address}`, { timeout: 1000 });
      const clients = [new Client({ registry: watching }), new Client({ registry: new CacheRegistry(asking, { ttl: 1 }) })];
      const loads: Array<ReturnType<typeof load>> = [];
      try {
        const nodeId = (await proc.waitForLine(/^ready /, 30_000)).split(" ")[1]!;
        for (const c of clients) await waitUntil(() => c.call(name, "Echo.Call", {}).then(() => true, () => false), 15_000, "a first call through the registry");
        for (const c of clients) loads.push(load(c, name));
        await new Promise((r) => setTimeout(r, 1000));

        await server.stop();
        await new Promise((r) => setTimeout(r, OUTAGE_MS));
        await server.start();
        const backAt = Date.now();

        const fresh = await createRegistry(`${s.name}://${server.address}`, { timeout: 1000 });
        let visibleMs: number;
        try {
          await waitUntil(() => inRegistry(fresh, name, nodeId), 20_000, "the node in the registry again", 100);
          visibleMs = Date.now() - backAt;
        } finally {
          await fresh.close();
        }
        await waitUntil(() => registeredAt(proc).some((at) => at >= backAt), 20_000, "a successful register after the server came back", 100);
        const reregisteredMs = registeredAt(proc).find((at) => at >= backAt)! - backAt;
        await new Promise((r) => setTimeout(r, Math.max(0, AFTER_MS - (Date.now() - backAt))));
        for (const l of loads) await l.stop();

        const [watched, asked] = loads.map((l) => l.tally) as [Tally, Tally];
        const line = `${s.name}: outage ${OUTAGE_MS / 1000} s, ttl ${TTL_S} s, interval ${INTERVAL_S} s — re-registered ${reregisteredMs} ms and listed ${visibleMs} ms after the server was back; watch-cached client ${summary(watched)}; 1 s-cache client ${summary(asked)}`;
        measurements.push(line);
        t.diagnostic(line);
        for (const tally of [watched, asked]) {
          assert.equal(tally.notFound, 0, `no call sees not found: ${summary(tally)}`);
          // The node answered throughout: nothing else may fail either (e.g. a cache that lost it and cannot ask the registry).
          assert.equal(tally.other.size, 0, `no call fails at all: ${summary(tally)}`);
          assert.ok(tally.ok > 100, `calls went through: ${summary(tally)}`);
        }
        assert.ok(reregisteredMs <= INTERVAL_S * 1000 + REREGISTER_SLACK_MS, `re-registered within one interval (${reregisteredMs} ms)`);
        assert.ok(visibleMs <= INTERVAL_S * 1000 + REREGISTER_SLACK_MS, `listed by a new client within one interval (${visibleMs} ms)`);
        // Still there a full TTL later: the registration is renewed, not merely restored.
        const last = await createRegistry(`${s.name}://${server.address}`, { timeout: 1000 });
        try {
          assert.ok(await inRegistry(last, name, nodeId), "still registered a TTL after the server came back");
        } finally {
          await last.close();
        }
      } catch (err) {
        t.diagnostic(`service stderr: ${proc.stderr().split("\n").filter((l) => !l.includes('"level":20')).join("\n").slice(-3000)}`);
        throw err;
      } finally {
        for (const l of loads) await l.stop();
        proc.signal("SIGKILL");
        await proc.exited(10_000).catch(() => undefined);
        for (const c of clients) await c.close();
        await watching.close();
        await asking.close();
        await server.dispose();
      }
    });
  }
});
