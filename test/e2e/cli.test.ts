/**
 * The `tsmicro` command, run as a user runs it (bin/tsmicro.js in a child process) against a real
 * service on the default mdns registry (loopback) and the default http broker.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { startGreeter, tsmicroProcess } from "../helpers/cli.ts";
import { waitUntil, type Proc } from "../helpers/net.ts";

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the command to its end. */
async function tsmicro(args: string[], env?: Record<string, string>): Promise<Result> {
  const proc = tsmicroProcess(args, env);
  const code = await proc.exited(20_000);
  return { code, stdout: proc.stdout(), stderr: proc.stderr() };
}

/** A failure is one line on stderr and nothing on stdout. */
function assertOneLineError(r: Result, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.trimEnd().split("\n").length, 1, `one line: ${r.stderr}`);
  assert.match(r.stderr, pattern);
}

describe("tsmicro command", () => {
  const name = `cli_greeter_${randomUUID().slice(0, 8)}`;
  let greeter: Proc;
  let nodeId: string;
  let address: string;

  before(async () => {
    ({ proc: greeter, nodeId, address } = await startGreeter(name));
  });

  after(async () => {
    greeter.signal("SIGTERM");
    await greeter.exited();
  });

  it("services: a table, and --json for scripts", async () => {
    const [human, json] = await Promise.all([tsmicro(["services"]), tsmicro(["services", "--json"])]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^NAME\s+VERSION\s+NODES$/m);
    assert.match(human.stdout, new RegExp(`^${name}\\s+v1\\.2\\.3\\s+1$`, "m"));
    assert.equal(json.code, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as Array<{ name: string; version: string; nodes: number }>;
    assert.deepEqual(
      rows.find((r) => r.name === name),
      { name, version: "v1.2.3", nodes: 1 },
    );
  });

  it("service <name>: nodes and endpoints with their request and response shapes", async () => {
    const [human, json] = await Promise.all([tsmicro(["service", name]), tsmicro(["--json", "service", name])]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`^${name} v1\\.2\\.3$`, "m"));
    assert.match(human.stdout, new RegExp(`^${nodeId}\\s+${address}\\s+.*transport=tcp`, "m"));
    assert.match(human.stdout, /^Greeter\.Hello\s+HelloRequest\{name string, times int32, excited bool\}\s+HelloResponse\{greeting string\}$/m);
    assert.match(human.stdout, /^Greeter\.Echo\s+-\s+-$/m);

    const [service] = JSON.parse(json.stdout) as Array<{ name: string; nodes: Array<{ id: string; address: string }>; endpoints: Array<{ name: string; request: { values: Array<{ name: string }> } | null }> }>;
    assert.equal(service!.name, name);
    assert.deepEqual(service!.nodes.map((n) => [n.id, n.address]), [[nodeId, address]]);
    const hello = service!.endpoints.find((e) => e.name === "Greeter.Hello");
    assert.deepEqual(hello?.request?.values.map((v) => v.name), ["name", "times", "excited"]);
  });

  it("service of an unknown name: one line, exit 1", async () => {
    assertOneLineError(await tsmicro(["service", `${name}_missing`]), 1, /service \S+_missing not found in the mdns registry/);
  });

  it("call prints the response; --json prints it on one line", async () => {
    const request = JSON.stringify({ name: "Ada", times: 2, excited: true });
    const [human, json] = await Promise.all([tsmicro(["call", name, "Greeter.Hello", request]), tsmicro(["call", name, "Greeter.Hello", request, "--json"])]);
    assert.equal(human.code, 0, human.stderr);
    assert.deepEqual(JSON.parse(human.stdout), { greeting: "Hello Ada! Hello Ada!" });
    assert.equal(json.stdout, '{"greeting":"Hello Ada! Hello Ada!"}\n');
  });

  it("call errors print the go-micro error JSON and exit non-zero", async () => {
    const [handlerError, unknownEndpoint, unknownService, badJson] = await Promise.all([
      tsmicro(["call", name, "Greeter.Hello", "{}"]),
      tsmicro(["call", name, "Greeter.Nope"]),
      tsmicro(["call", `${name}_missing`, "Greeter.Hello", "{}"]),
      tsmicro(["call", name, "Greeter.Hello", "{name:"]),
    ]);
    assertOneLineError(handlerError, 1, /^\{/);
    assert.deepEqual(JSON.parse(handlerError.stderr), { id: name, code: 400, detail: "name is required", status: "Bad Request" });
    assertOneLineError(unknownEndpoint, 1, /^\{/);
    assert.equal((JSON.parse(unknownEndpoint.stderr) as { code: number }).code, 404);
    assert.match((JSON.parse(unknownEndpoint.stderr) as { detail: string }).detail, /Greeter\.Nope/);
    assert.equal(
      unknownService.stderr,
      `{"id":"go.micro.client","code":500,"detail":"error selecting ${name}_missing node: not found","status":"Internal Server Error"}\n`,
    );
    assert.equal(unknownService.code, 1);
    assertOneLineError(badJson, 2, /^tsmicro: request is not valid JSON/);
  });

  it("health asks each node for Debug.Health", async () => {
    const [human, json, missing] = await Promise.all([tsmicro(["health", name]), tsmicro(["health", name, "--json"]), tsmicro(["health", `${name}_missing`])]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`^${nodeId}\\s+${address}\\s+v1\\.2\\.3\\s+ok\\s+\\d+ ms$`, "m"));
    const [node] = JSON.parse(json.stdout) as Array<{ id: string; status: string; latencyMs: number }>;
    assert.equal(node!.id, nodeId);
    assert.equal(node!.status, "ok");
    assertOneLineError(missing, 1, /not found/);
  });

  it("takes the services' --registry flag and MICRO_REGISTRY, validated the same way", async () => {
    const [badFlag, badEnv, memoryByFlag, memoryByEnv, flagBeatsEnv, unknownCommand] = await Promise.all([
      tsmicro(["services", "--registry=bogus"]),
      tsmicro(["services"], { MICRO_REGISTRY: "bogus" }),
      tsmicro(["--registry", "memory", "services", "--json"]),
      tsmicro(["services", "--json"], { MICRO_REGISTRY: "memory" }),
      tsmicro(["services", "--json", "--registry=mdns"], { MICRO_REGISTRY: "memory" }),
      tsmicro(["frobnicate"]),
    ]);
    assertOneLineError(badFlag, 2, /--registry: unknown registry "bogus"/);
    assertOneLineError(badEnv, 2, /MICRO_REGISTRY: unknown registry "bogus"/);
    // A fresh process's memory registry is empty: the greeter on mdns is not in it.
    assert.deepEqual(JSON.parse(memoryByFlag.stdout), []);
    assert.deepEqual(JSON.parse(memoryByEnv.stdout), []);
    assert.ok((JSON.parse(flagBeatsEnv.stdout) as Array<{ name: string }>).some((s) => s.name === name), "the flag beats the environment");
    assertOneLineError(unknownCommand, 2, /unknown command 'frobnicate'/);
  });

  it("subscribe prints each published event until Ctrl-C", async () => {
    const topic = `cli.events.${randomUUID().slice(0, 8)}`;
    const subscriber = tsmicroProcess(["subscribe", topic, "--json"]);
    try {
      await waitUntil(() => subscriber.stderr().includes(`subscribed to ${topic}`), 15_000, "the subscriber to be ready");
      const published = await tsmicro(["publish", topic, '{"name":"davie","grade":80}', "--header", "name=davie"]);
      assert.equal(published.code, 0, published.stderr);
      assert.equal(published.stdout, `published to ${topic} via the http broker\n`);

      const line = await subscriber.waitForLine(/"topic"/);
      const event = JSON.parse(line) as { topic: string; header: Record<string, string>; encoding: string; body: unknown };
      assert.equal(event.topic, topic);
      assert.deepEqual(event.header, { name: "davie" });
      assert.equal(event.encoding, "json");
      assert.deepEqual(event.body, { name: "davie", grade: 80 });
    } finally {
      subscriber.signal("SIGINT");
    }
    assert.equal(await subscriber.exited(), 0);
  });

  it("publish with a malformed message or header: one line, exit 2", async () => {
    const [badMessage, badHeader] = await Promise.all([tsmicro(["publish", "t", "nope"]), tsmicro(["publish", "t", "{}", "--header", "novalue"])]);
    assertOneLineError(badMessage, 2, /message is not valid JSON/);
    assertOneLineError(badHeader, 2, /--header: "novalue" is not key=value/);
  });

  it("web refuses a malformed --address", async () => {
    assertOneLineError(await tsmicro(["web", "--address", "nowhere"]), 2, /--address/);
  });
});
