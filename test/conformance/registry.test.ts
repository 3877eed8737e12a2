/**
 * One conformance suite, run against every registry: memory, mdns, etcd, zookeeper, nats, consul,
 * plus the read-only dns registry's own cases. Servers the default instances of which CI provides
 * (etcd, ZooKeeper, NATS, Consul) fail rather than skip under CI=true.
 * The outage cases start servers of their own on free ports, to stop and restart them.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { inflateSync } from "node:zlib";
import { after, describe, it, type TestContext } from "node:test";
import { createRegistry } from "../../src/cmd/create.ts";
import { CacheRegistry } from "../../src/registry/cache.ts";
import {
  RegistryUnavailableError,
  ServiceNotFoundError,
  nodePath,
  splitHostPort,
  type Node,
  type Registry,
  type Service,
  type WatchEvent,
  type Watcher,
} from "../../src/registry/registry.ts";
import { canConnect, skipOrFail, startTs, waitUntil, within } from "../helpers/net.ts";
import { OWNABLE_REGISTRY_SERVERS, startDnsServer, type OwnedServer } from "../helpers/registry-servers.ts";

/** A process that registers one node and re-registers it every interval, as a service does. */
const REGISTER_NODE = fileURLToPath(new URL("../helpers/register-node.ts", import.meta.url));
/** TTL and re-register interval of the processes that get SIGKILLed. */
const KILL_TTL_S = 3;
const KILL_INTERVAL_S = 1;
/** Outage case: the registering process's TTL/interval, and how long the server stays down. */
const OUTAGE_TTL_S = 4;
const OUTAGE_INTERVAL_S = 1;
const OUTAGE_MS = 10_000;
/** Slack for observing a change: lookups poll every 20 ms, servers expire on coarse ticks. */
const OBSERVE_SLACK_MS = 1500;

interface Subject {
  name: string;
  /** What createRegistry gets, here and in the child processes. */
  uri: string;
  /** Why it cannot run here, or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /** CI installs and starts it, so under CI=true it must be usable. */
  ciProvides: boolean;
  /** Nodes registered by another process are visible (memory is per process). */
  crossProcess: boolean;
  /** A server of its own, for the outage case, with the binary it needs. */
  ownServer?: { start: () => Promise<OwnedServer>; installed: () => boolean };
}

const listening = (port: number, what: string) => async () =>
  (await canConnect(port)) ? undefined : `${what} is not listening on 127.0.0.1:${port} (source .ci/setup/registries.sh)`;

/** The agent .ci/setup/consul.sh starts, unless CONSUL_HTTP_ADDR (Consul's own variable) names another. */
const consulAddress = process.env.CONSUL_HTTP_ADDR?.replace(/^https?:\/\//, "") ?? "127.0.0.1:8500";

const subjects: Subject[] = [
  { name: "memory", uri: "memory", unavailable: async () => undefined, ciProvides: true, crossProcess: false },
  { name: "mdns", uri: "mdns", unavailable: async () => undefined, ciProvides: true, crossProcess: true },
  {
    name: "etcd",
    uri: "etcd://127.0.0.1:2379",
    unavailable: listening(2379, "etcd"),
    ciProvides: true,
    crossProcess: true,
    ownServer: OWNABLE_REGISTRY_SERVERS.etcd,
  },
  {
    name: "zookeeper",
    uri: "zookeeper://127.0.0.1:2181",
    unavailable: listening(2181, "ZooKeeper"),
    ciProvides: true,
    crossProcess: true,
    ownServer: OWNABLE_REGISTRY_SERVERS.zookeeper,
  },
  {
    name: "nats",
    uri: "nats://127.0.0.1:4222",
    unavailable: listening(4222, "NATS"),
    ciProvides: true,
    crossProcess: true,
    ownServer: OWNABLE_REGISTRY_SERVERS.nats,
  },
  {
    name: "consul",
    uri: `consul://${consulAddress}`,
    unavailable: async () => {
      const { host, port } = splitHostPort(consulAddress);
      return (await canConnect(port ?? 8500, host)) ? undefined : `Consul is not listening on ${consulAddress} (source .ci/setup/consul.sh)`;
    },
    ciProvides: true,
    crossProcess: true,
    ownServer: OWNABLE_REGISTRY_SERVERS.consul,
  },
];

const whyUnavailable = new Map(await Promise.all(subjects.map(async (s) => [s.name, await s.unavailable()] as const)));

// ---- helpers ----

const measurements: string[] = [];
function measure(t: TestContext, line: string): void {
  measurements.push(line);
  t.diagnostic(line);
}
after(() => {
  if (measurements.length) console.log(measurements.map((m) => `MEASURED ${m}`).join("\n"));
});

const uniqueName = (subject: string, label: string) => `conformance-${subject}-${label}-${randomUUID().slice(0, 8)}`;

const makeNode = (serviceName: string, port: number, metadata: Record<string, string> = {}): Node => ({
  id: `${serviceName}-${randomUUID()}`,
  address: `127.0.0.1:${port}`,
  metadata,
});

const makeService = (name: string, version: string, nodes: Node[], metadata: Record<string, string> = {}): Service => ({
  name,
  version,
  metadata,
  endpoints: [],
  nodes,
});

/** The service's nodes, or [] when the registry does not know it (or, if asked, cannot be reached); other errors propagate. */
async function lookup(registry: Registry, name: string, unreachableAsEmpty = false): Promise<Service[] | RegistryUnavailableError> {
  try {
    return await registry.getService(name);
  } catch (err) {
    if (err instanceof ServiceNotFoundError) return [];
    if (unreachableAsEmpty && err instanceof RegistryUnavailableError) return err;
    throw err;
  }
}

const nodeIds = (services: Service[]) => services.flatMap((s) => s.nodes.map((n) => n.id)).sort();

interface EventuallyOptions {
  timeoutMs?: number;
  /** Right after a server restart, "unreachable" only means "not yet". */
  whileReconnecting?: boolean;
}

async function eventually(
  registry: Registry,
  name: string,
  cond: (services: Service[]) => boolean,
  what: string,
  { timeoutMs = 10_000, whileReconnecting = false }: EventuallyOptions = {},
): Promise<Service[]> {
  let last: Service[] | RegistryUnavailableError = [];
  try {
    await waitUntil(async () => {
      last = await lookup(registry, name, whileReconnecting);
      return Array.isArray(last) && cond(last);
    }, timeoutMs, what);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
  }
  return last as Service[];
}

/** The next event matching cond (others are skipped), or a timeout failure. */
/** A watcher.next() that outlived a timed-out wait: the event it gets belongs to the next wait. */
const pendingNext = new WeakMap<Watcher, Promise<WatchEvent>>();

async function nextEvent(watcher: Watcher, cond: (e: WatchEvent) => boolean, timeoutMs: number, what: string): Promise<WatchEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const next = pendingNext.get(watcher) ?? watcher.next();
    pendingNext.set(watcher, next);
    const event = await within(next, Math.max(1, deadline - Date.now()), `watch event: ${what}`);
    pendingNext.delete(watcher);
    if (cond(event)) return event;
  }
}

const about = (nodeId: string) => (e: WatchEvent) => e.service.nodes.some((n) => n.id === nodeId);

/**
 * A watch is live once it reports something; some registries start theirs in the background, so
 * a probe node is (re)registered until an event about it arrives.
 */
async function untilWatchIsLive(registry: Registry, watcher: Watcher, name: string): Promise<Service> {
  const probe = makeService(name, "v1", [makeNode(name, 1)]);
  for (let attempt = 1; attempt <= 20; attempt++) {
    probe.nodes[0]!.metadata = { attempt: String(attempt) };
    await registry.register(probe, { ttl: 60 });
    try {
      await nextEvent(watcher, about(probe.nodes[0]!.id), 500, "probe");
      return probe;
    } catch {
      /* not live yet: register again, with different metadata so it counts as an update */
    }
  }
  throw new Error("the watch never reported the probe node");
}

async function withRegistry(uri: string, fn: (registry: Registry) => Promise<void>): Promise<void> {
  const registry = await createRegistry(uri, { timeout: 2000 });
  try {
    await fn(registry);
  } finally {
    await registry.close();
  }
}

// ---- the suite ----

describe("registry conformance", { concurrency: true }, () => {
  for (const s of subjects) {
    describe(`${s.name} registry`, { concurrency: 1 }, () => {
      const reason = whyUnavailable.get(s.name);
      if (reason) {
        it(`${s.name}: conformance suite`, (t) => skipOrFail(t, `${s.name} registry conformance: ${reason}`, s.ciProvides));
        return;
      }

      it(`${s.name}: register, get, list, deregister`, { timeout: 30_000 }, () =>
        withRegistry(s.uri, async (r) => {
          const name = uniqueName(s.name, "basic");
          await assert.rejects(r.getService(name), ServiceNotFoundError, "unknown service is not found");
          const service = makeService(name, "v1.0.0", [makeNode(name, 10001)]);
          await r.register(service, { ttl: 30 });
          const found = await eventually(r, name, (x) => x.length > 0, "the registered service");
          assert.deepEqual(found, [service]);
          await waitUntil(async () => (await r.listServices()).some((x) => x.name === name), 10_000, "listServices to include it");
          await r.deregister(service);
          await eventually(r, name, (x) => x.length === 0, "the deregistered service to be gone");
          await assert.rejects(r.getService(name), ServiceNotFoundError);
          await waitUntil(async () => !(await r.listServices()).some((x) => x.name === name), 10_000, "listServices to drop it");
        }),
      );

      it(`${s.name}: several nodes and versions of one service`, { timeout: 30_000 }, () =>
        withRegistry(s.uri, async (r) => {
          const name = uniqueName(s.name, "versions");
          const [a, b, c] = [makeNode(name, 10011), makeNode(name, 10012), makeNode(name, 10013)];
          await r.register(makeService(name, "v1", [a]), { ttl: 30 });
          await r.register(makeService(name, "v1", [b]), { ttl: 30 });
          await r.register(makeService(name, "v2", [c]), { ttl: 30 });
          const all = await eventually(r, name, (x) => nodeIds(x).length === 3, "three nodes");
          const byVersion = Object.fromEntries(all.map((x) => [x.version, nodeIds([x])]));
          assert.deepEqual(byVersion, { v1: [a.id, b.id].sort(), v2: [c.id] }, "one entry per version holding its nodes");
          await r.deregister(makeService(name, "v1", [b]));
          await eventually(r, name, (x) => nodeIds(x).join() === [a.id, c.id].sort().join(), "b removed, a and c kept");
          await r.deregister(makeService(name, "v1", [a]));
          await r.deregister(makeService(name, "v2", [c]));
        }),
      );

      it(`${s.name}: metadata and endpoints round-trip unchanged`, { timeout: 30_000 }, () =>
        withRegistry(s.uri, async (r) => {
          const name = uniqueName(s.name, "metadata");
          const service: Service = {
            name,
            version: "v1.0.0",
            metadata: { team: "students", major: "软件工程专业", json: '{"x":[1,2]}' },
            endpoints: [
              {
                name: "StudentService.GetStudent",
                request: { name: "StudentRequest", type: "StudentRequest", values: [{ name: "name", type: "string", values: null }] },
                response: {
                  name: "Student",
                  type: "Student",
                  values: [
                    { name: "name", type: "string", values: null },
                    { name: "grade", type: "int32", values: null },
                  ],
                },
                metadata: { stream: "false" },
              },
              { name: "StudentService.Watch", request: null, response: null, metadata: { stream: "true" } },
            ],
            nodes: [makeNode(name, 10021, { transport: "http", protocol: "mucp", "server-id": "x/y:z" })],
          };
          await r.register(service, { ttl: 30 });
          const [found] = await eventually(r, name, (x) => x.length > 0, "the registered service");
          assert.deepEqual(found, service);
          await r.deregister(service);
        }),
      );

      it(`${s.name}: watch sees create, update, delete`, { timeout: 30_000 }, () =>
        withRegistry(s.uri, async (r) => {
          const name = uniqueName(s.name, "watch");
          const watcher = r.watch({ service: name });
          try {
            const probe = await untilWatchIsLive(r, watcher, name);
            const node = makeNode(name, 10031, { colour: "red" });
            await r.register(makeService(name, "v1", [node]), { ttl: 30 });
            const created = await nextEvent(watcher, about(node.id), 10_000, "create");
            assert.equal(created.action, "create");
            assert.equal(created.service.name, name);
            assert.deepEqual(created.service.nodes, [node]);

            const changed = { ...node, metadata: { colour: "blue" } };
            await r.register(makeService(name, "v1", [changed]), { ttl: 30 });
            const updated = await nextEvent(watcher, about(node.id), 10_000, "update");
            assert.equal(updated.action, "update");
            assert.deepEqual(updated.service.nodes, [changed]);

            await r.deregister(makeService(name, "v1", [changed]));
            const deleted = await nextEvent(watcher, about(node.id), 10_000, "delete");
            assert.equal(deleted.action, "delete");
            assert.equal(deleted.service.nodes[0]!.id, node.id);
            await r.deregister(probe);
          } finally {
            watcher.stop();
          }
        }),
      );

      if (s.crossProcess)
        it(`${s.name}: a SIGKILLed node disappears within TTL + interval`, { timeout: 60_000 }, (t) =>
          withRegistry(s.uri, async (r) => {
            const name = uniqueName(s.name, "killed");
            const nodeId = `${name}-${randomUUID()}`;
            const child = startTs(REGISTER_NODE, [s.uri, name, nodeId, String(KILL_TTL_S), String(KILL_INTERVAL_S)]);
            try {
              await child.waitForLine(/^registered /, 30_000);
              await eventually(r, name, (x) => nodeIds(x).includes(nodeId), "the child's node");
              child.signal("SIGKILL");
              await child.exited(5000);
              const killedAt = Date.now();
              const bound = (KILL_TTL_S + KILL_INTERVAL_S) * 1000;
              await eventually(r, name, (x) => !nodeIds(x).includes(nodeId), "the killed node to disappear", { timeoutMs: bound + OBSERVE_SLACK_MS });
              const elapsed = Date.now() - killedAt;
              measure(t, `${s.name}: SIGKILLed node gone after ${elapsed} ms (ttl ${KILL_TTL_S} s, interval ${KILL_INTERVAL_S} s)`);
            } finally {
              child.signal("SIGKILL");
            }
          }),
        );

      if (s.name === "etcd")
        it("etcd: a lease lost behind the registry's back is granted again on the next register", { timeout: 30_000 }, () =>
          withRegistry(s.uri, async (r) => {
            const { Etcd3 } = await import("etcd3");
            const etcd = new Etcd3({ hosts: "http://127.0.0.1:2379" });
            try {
              const name = uniqueName("etcd", "lease");
              const service = makeService(name, "v1", [makeNode(name, 10041)]);
              await r.register(service, { ttl: 30 });
              const stored = await etcd.get(nodePath(name, service.nodes[0]!.id)).exec();
              assert.equal(stored.kvs.length, 1, "the node is stored under go-micro's key");
              assert.deepEqual(JSON.parse(stored.kvs[0]!.value.toString()), service, "as the JSON of the service with that node");
              await etcd.leaseClient.leaseRevoke({ ID: stored.kvs[0]!.lease });
              await assert.rejects(r.getService(name), ServiceNotFoundError, "revoking the lease removed the key");
              await r.register(service, { ttl: 30 });
              assert.deepEqual(nodeIds(await r.getService(name)), [service.nodes[0]!.id]);
              await r.deregister(service);
            } finally {
              etcd.close();
            }
          }),
        );

      if (s.name === "zookeeper")
        it("zookeeper: stored as go-micro's zookeeper plugin stores it, and its persistent znodes are read", { timeout: 30_000 }, () =>
          withRegistry(s.uri, async (r) => {
            // node-zookeeper-client ships no types: the few calls used here.
            type Done = (err: Error | null, result?: unknown) => void;
            interface Zk {
              once(event: "connected", fn: () => void): void;
              connect(): void;
              close(): void;
              getData(path: string, cb: Done): void;
              create(path: string, data: Buffer, mode: number, cb: Done): void;
              remove(path: string, version: number, cb: Done): void;
            }
            const lib = "node-zookeeper-client";
            const zookeeper = ((await import(lib)) as { default: { createClient(address: string): Zk; CreateMode: { PERSISTENT: number } } }).default;
            const zk = zookeeper.createClient("127.0.0.1:2181");
            const call = <T>(fn: (cb: Done) => void) => new Promise<T>((resolve, reject) => fn((err, result) => (err ? reject(err) : resolve(result as T))));
            try {
              const connected = new Promise<void>((resolve) => zk.once("connected", resolve));
              zk.connect();
              await within(connected, 10_000, "zookeeper connect");
              const name = uniqueName("zookeeper", "layout");
              const ours = makeService(name, "v1", [makeNode(name, 10061)]);
              await r.register(ours, { ttl: 30 });
              const path = nodePath(name, ours.nodes[0]!.id, "/micro-registry");
              const data = await call<Buffer>((cb) => zk.getData(path, cb));
              assert.deepEqual(JSON.parse(String(data)), ours, "tsmicro's node: /micro-registry/<service>/<node-id>, the JSON of the service with that node");
              // A go-micro node: a persistent znode with the same layout, left to deregister itself.
              const theirs = makeService(name, "v1", [makeNode(name, 10062, { server: "mucp" })]);
              const theirPath = nodePath(name, theirs.nodes[0]!.id, "/micro-registry");
              await call((cb) => zk.create(theirPath, Buffer.from(JSON.stringify(theirs)), zookeeper.CreateMode.PERSISTENT, cb));
              try {
                await eventually(r, name, (x) => nodeIds(x).length === 2, "both nodes");
              } finally {
                await call((cb) => zk.remove(theirPath, -1, cb));
              }
              await r.deregister(ours);
            } finally {
              zk.close();
            }
          }),
        );

      // A node cut off from etcd (the server up) stops renewing: its lease lapses. Its next register,
      // with the registry's client still holding the lapsed lease, must grant a new one and list it again.
      if (s.name === "etcd")
        it("etcd: a registration whose lease lapsed is listed again by its next register (a new lease)", { timeout: 30_000 }, () =>
          withRegistry(s.uri, async (r) => {
            const name = uniqueName(s.name, "lapse");
            const service = makeService(name, "v1", [makeNode(name, 10052)]);
            const ttl = 2;
            await r.register(service, { ttl });
            await withRegistry(s.uri, async (other) => {
              await eventually(other, name, (x) => nodeIds(x).length === 1, "the node listed");
              await eventually(other, name, (x) => x.length === 0, "the node to drop out once its TTL lapsed", { timeoutMs: ttl * 1000 + 3000 });
              await r.register(service, { ttl });
              await eventually(other, name, (x) => nodeIds(x).length === 1, "the node listed again after its register", { timeoutMs: 2000 });
            });
            await r.deregister(service);
          }),
        );

      if (s.name === "consul")
        it("consul: stored as go-micro stores it; a node whose TTL lapsed is listed again by its next register", { timeout: 30_000 }, () =>
          withRegistry(s.uri, async (r) => {
            const name = uniqueName("consul", "lapse");
            const node = makeNode(name, 10051, { colour: "red" });
            const service = makeService(name, "v1", [node], { team: "students" });
            const ttl = 2;
            await r.register(service, { ttl });
            const stored = (await (await fetch(`http://${consulAddress}/v1/agent/service/${node.id}`)).json()) as Record<string, unknown>;
            const tags = Object.fromEntries((stored.Tags as string[]).map((t) => [t.slice(0, 2), inflateSync(Buffer.from(t.slice(2), "hex")).toString()]));
            assert.deepEqual(
              { ...tags, id: stored.ID, name: stored.Service, address: stored.Address, port: stored.Port, meta: stored.Meta },
              { "v-": "v1", "t-": '{"colour":"red"}', id: node.id, name, address: "127.0.0.1", port: 10051, meta: { team: "students" } },
              "a Consul service per node, version and node metadata in go-micro's zlib+hex tags, service metadata in Meta",
            );
            // Consul keeps a re-registered check's status (critical after the lapse): both an
            // unchanged and a changed registration must make the node passing again.
            for (const colour of ["red", "blue"]) {
              await eventually(r, name, (x) => x.length === 0, "the node to drop out once its TTL lapsed", { timeoutMs: ttl * 1000 + OBSERVE_SLACK_MS });
              node.metadata = { colour };
              await r.register(service, { ttl });
              await eventually(r, name, (x) => nodeIds(x).includes(node.id), `the node back after a ${colour === "red" ? "unchanged" : "changed"} register`, {
                timeoutMs: ttl * 1000 - 500,
              });
            }
            await r.deregister(service);
          }),
        );

      const own = s.ownServer;
      if (own)
        it(
          `${s.name}: server down ${OUTAGE_MS / 1000} s and back — the cache serves meanwhile, registrations return by themselves`,
          { timeout: 90_000 },
          async (t) => {
            if (!own.installed()) return skipOrFail(t, `${s.name} server binary not installed, cannot run the outage case`, s.ciProvides);
            const server = await own.start();
            const uri = `${s.name}://${server.address}`;
            const name = uniqueName(s.name, "outage");
            const nodeId = `${name}-${randomUUID()}`;
            const child = startTs(REGISTER_NODE, [uri, name, nodeId, String(OUTAGE_TTL_S), String(OUTAGE_INTERVAL_S)]);
            const registry = await createRegistry(uri, { timeout: 1000 });
            const logged: string[] = [];
            const cache = new CacheRegistry(registry, { ttl: 1, log: (line) => logged.push(line) });
            try {
              await child.waitForLine(/^registered /, 30_000);
              await eventually(cache, name, (x) => nodeIds(x).includes(nodeId), "the node through the cache");

              await server.stop();
              const stoppedAt = Date.now();
              let calls = 0;
              while (Date.now() - stoppedAt < OUTAGE_MS) {
                const services = await within(cache.getService(name), 2000, "a lookup through the cache during the outage");
                assert.deepEqual(nodeIds(services), [nodeId], "the cache keeps serving the last known node");
                calls++;
                await new Promise((r) => setTimeout(r, 200));
              }
              assert.ok(calls >= 20, `lookups kept flowing during the outage (${calls})`);
              await assert.rejects(registry.getService(name), RegistryUnavailableError, "the registry itself is unreachable");
              assert.equal(logged.filter((l) => l.includes("unreachable")).length, 1, `one outage line: ${logged.join(" | ")}`);

              await server.start();
              const restartedAt = Date.now();
              // A client that never saw the node finds it: it is really back on the server.
              await withRegistry(uri, (fresh) =>
                eventually(fresh, name, (x) => nodeIds(x).includes(nodeId), "the node back on the restarted server", {
                  timeoutMs: 30_000,
                  whileReconnecting: true,
                }).then(() => undefined),
              );
              const recovery = Date.now() - restartedAt;
              await eventually(registry, name, (x) => nodeIds(x).includes(nodeId), "the long-lived client to reconnect", {
                timeoutMs: 15_000,
                whileReconnecting: true,
              });
              // The registration must be kept alive now, not merely restored: it outlives a full TTL.
              await new Promise((r) => setTimeout(r, (OUTAGE_TTL_S + OUTAGE_INTERVAL_S) * 1000 + OBSERVE_SLACK_MS));
              assert.deepEqual(nodeIds(await registry.getService(name)), [nodeId], "still registered a TTL after the restart");
              await waitUntil(async () => (await cache.getService(name), logged.some((l) => l.includes("reachable again"))), 10_000, "the cache to refresh");
              measure(t, `${s.name}: registration back ${recovery} ms after the server restarted (outage ${OUTAGE_MS / 1000} s, ttl ${OUTAGE_TTL_S} s, interval ${OUTAGE_INTERVAL_S} s)`);
            } catch (err) {
              t.diagnostic(`registering process said: ${child.stdout().slice(-600)} ${child.stderr().slice(-1500)}`);
              throw err;
            } finally {
              child.signal("SIGKILL");
              await cache.close();
              await server.dispose();
            }
          },
        );
    });
  }

  describe("dns registry", { concurrency: 1 }, () => {
    const fqdn = "svc.test";
    async function withDns(fn: (dns: Awaited<ReturnType<typeof startDnsServer>>, r: Registry) => Promise<void>, opts: Record<string, unknown> = {}) {
      const dns = await startDnsServer();
      // The DNS server answers from this busy test process: a tight resolver timeout fails under load.
      const registry = await createRegistry(`dns://${dns.address}`, { timeout: 5000, domain: fqdn, ...opts });
      try {
        await fn(dns, registry);
      } finally {
        await registry.close();
        await dns.close();
      }
    }

    it("dns: SRV targets resolve through A/AAAA to nodes with the SRV ports", { timeout: 15_000 }, () =>
      withDns(async (dns, r) => {
        dns.records.srv.set(`_students._tcp.${fqdn}`, [
          { target: `a.${fqdn}`, port: 8081 },
          { target: `b.${fqdn}`, port: 8082 },
        ]);
        dns.records.a.set(`a.${fqdn}`, ["127.0.0.1", "127.0.0.2"]);
        dns.records.aaaa.set(`b.${fqdn}`, ["::1"]);
        const services = await r.getService("students");
        assert.equal(services.length, 1);
        assert.equal(services[0]!.name, "students");
        assert.deepEqual(services[0]!.nodes.map((n) => n.address).sort(), ["127.0.0.1:8081", "127.0.0.2:8081", "[::1]:8082"]);
      }),
    );

    it("dns: without SRV records, A records and the port option", { timeout: 15_000 }, () =>
      withDns(
        async (dns, r) => {
          dns.records.a.set(`plain.${fqdn}`, ["127.0.0.3"]);
          assert.deepEqual(nodeIds(await r.getService("plain")), ["plain-127.0.0.3:9000"]);
        },
        { port: 9000 },
      ),
    );

    it("dns: an unknown name is ServiceNotFoundError", { timeout: 15_000 }, () =>
      withDns(async (_dns, r) => {
        await assert.rejects(r.getService("nobody"), ServiceNotFoundError);
      }),
    );

    it("dns: register and deregister are refused (read-only)", { timeout: 15_000 }, () =>
      withDns(async (_dns, r) => {
        const service = makeService("students", "v1", [makeNode("students", 1)]);
        await assert.rejects(r.register(service), /read-only/);
        await assert.rejects(r.deregister(service), /read-only/);
      }),
    );

    it("dns: watch reports nodes that appear and go", { timeout: 15_000 }, () =>
      withDns(
        async (dns, r) => {
          dns.records.srv.set(`_students._tcp.${fqdn}`, [{ target: `a.${fqdn}`, port: 8081 }]);
          dns.records.a.set(`a.${fqdn}`, ["127.0.0.1"]);
          const watcher = r.watch({ service: "students" });
          try {
            const first = await nextEvent(watcher, () => true, 5000, "the initial node");
            assert.deepEqual([first.action, first.service.nodes[0]!.address], ["create", "127.0.0.1:8081"]);
            dns.records.a.set(`a.${fqdn}`, ["127.0.0.1", "127.0.0.2"]);
            const added = await nextEvent(watcher, () => true, 5000, "the added node");
            assert.deepEqual([added.action, added.service.nodes[0]!.address], ["create", "127.0.0.2:8081"]);
            dns.records.a.set(`a.${fqdn}`, ["127.0.0.2"]);
            const removed = await nextEvent(watcher, () => true, 5000, "the removed node");
            assert.deepEqual([removed.action, removed.service.nodes[0]!.address], ["delete", "127.0.0.1:8081"]);
          } finally {
            watcher.stop();
          }
        },
        { pollInterval: 100 },
      ),
    );

    it("dns: an unreachable DNS server is RegistryUnavailableError, not 'not found'", { timeout: 15_000 }, async () => {
      const dns = await startDnsServer();
      await dns.close(); // its port now refuses
      const r = await createRegistry(`dns://${dns.address}`, { timeout: 500 });
      try {
        await assert.rejects(r.getService("students"), RegistryUnavailableError);
      } finally {
        await r.close();
      }
    });
  });
});
