/**
 * npm run demo: the go-micro tutorial's five steps, end to end, on the embedded defaults
 * (mdns registry on loopback, http broker): each part runs as its own process, as a user would.
 * Then the walkthrough's services run once more and print where their /metrics and the dashboard
 * are; `npm run demo -- --dashboard` keeps them running (with a little traffic) until Ctrl-C.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { JSON_TYPE, PROTOBUF_TYPE, Service, createClient, createRegistry, encodeEvent, type WatchEvent } from "../../src/index.ts";
import { StudentManager, StudentSchema } from "./gen/student_pb.ts";

const here = (part: string) => fileURLToPath(new URL(`./${part}.ts`, import.meta.url));
const TSMICRO = fileURLToPath(new URL("../../bin/tsmicro.js", import.meta.url));
// Keep the framework logs (the children's and this process's) out of the walkthrough's output unless asked for.
process.env.MICRO_LOG_LEVEL ??= "warn";
const env = { ...process.env };
const keepRunning = process.argv.includes("--dashboard");

interface Part {
  child: ChildProcess;
  output: () => string;
  line: (re: RegExp, timeoutMs?: number) => Promise<string>;
  exit: Promise<number | null>;
}

const started = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of started) if (c.exitCode === null && c.pid) process.kill(c.pid, "SIGKILL");
});

/** Runs a walkthrough part in its own Node process (no tsx wrapper, so its PID is the service's). */
function part(name: string, args: string[] = [], command = ["--import", "tsx", here(name)]): Part {
  const child = spawn(process.execPath, [...command, ...args], { env, stdio: ["ignore", "pipe", "inherit"] });
  started.add(child);
  let out = "";
  const waiters = new Set<() => void>();
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    for (const w of waiters) w();
  });
  const exit = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      started.delete(child);
      for (const w of waiters) w();
      resolve(code);
    }),
  );
  const line = (re: RegExp, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms`)), timeoutMs);
      const check = () => {
        const found = out.split("\n").find((l) => re.test(l));
        if (found !== undefined || child.exitCode !== null) {
          waiters.delete(check);
          clearTimeout(timer);
          if (found !== undefined) resolve(found);
          else reject(new Error(`${name} exited (${child.exitCode}) without printing ${re}`));
        }
      };
      waiters.add(check);
      check();
    });
  return { child, output: () => out, line, exit };
}

async function run(name: string, args: string[] = []): Promise<{ code: number | null; out: string }> {
  const p = part(name, args);
  const code = await p.exit;
  return { code, out: p.output().trim() };
}

const say = (s: string) => console.log(s);
const heading = (n: number, title: string) => say(`\n── Step ${n}: ${title}`);

async function main(): Promise<void> {
  say("tsmicro student walkthrough — registry mdns (loopback only), broker http, transport tcp");

  heading(1, "student_service registers; a client finds it through the registry and calls it");
  const server = part("server");
  say(`  server  : ${await server.line(/ready at/)}`);
  const call = await run("client");
  say(`  client  : ${call.out}   (exit ${call.code})`);
  if (call.code !== 0) throw new Error("step 1: the call failed");

  heading(2, "the service is not in the client's registry → go-micro's not-found error");
  server.child.kill("SIGTERM");
  await server.exit;
  say("  server  : stopped with SIGTERM (deregistered from mdns on the way out)");
  const missing = await run("client");
  say(`  client  : ${missing.out}   (exit ${missing.code})`);
  if (missing.code !== 1) throw new Error("step 2: expected the not-found error");

  heading(3, "--register_ttl=4 --register_interval=2: a killed node disappears once its TTL passes");
  const registry = await createRegistry("mdns");
  const watcher = registry.watch({ service: "student_service" });
  const next = (action: WatchEvent["action"]) =>
    (async () => {
      for (;;) {
        const e = await watcher.next();
        if (e.action === action) return e;
      }
    })();
  const created = next("create");
  const mortal = part("server", ["--register_ttl=4", "--register_interval=2"]);
  await mortal.line(/ready at/);
  const node = (await created).service.nodes[0]!;
  say(`  watch   : create ${node.id} at ${node.address}`);
  const deleted = next("delete");
  const killedAt = Date.now();
  mortal.child.kill("SIGKILL");
  say("  server  : SIGKILLed — no deregistration, no goodbye");
  await deleted;
  say(`  watch   : delete after ${((Date.now() - killedAt) / 1000).toFixed(1)} s (TTL 4 s, refreshed every 2 s)`);
  watcher.stop();
  await registry.close();

  heading(4, "event-driven decoupling: the user service publishes a Student on go.micro.srv.message");
  const subscriber = part("subscriber");
  say(`  message : ${await subscriber.line(/subscribed to/)}`);
  const publishedJson = await run("publisher", ["json"]);
  say(`  user    : ${publishedJson.out}`);
  say(`  message : ${await subscriber.line(/received .* as application\/json/)}`);

  heading(5, "the same event as protobuf: smaller, and it decodes to the same typed Student");
  const publishedProto = await run("publisher", ["protobuf"]);
  say(`  user    : ${publishedProto.out}`);
  say(`  message : ${await subscriber.line(/received .* as application\/protobuf/)}`);
  const student = create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" });
  const jsonBody = encodeEvent("go.micro.srv.message", student, { schema: StudentSchema, contentType: JSON_TYPE }).body;
  const protoBody = encodeEvent("go.micro.srv.message", student, { schema: StudentSchema, contentType: PROTOBUF_TYPE }).body;
  say(`  body    : JSON ${jsonBody.length} bytes  ${Buffer.from(jsonBody).toString()}`);
  say(`  body    : protobuf ${protoBody.length} bytes (${Math.round((100 * protoBody.length) / jsonBody.length)}% of the JSON)`);
  subscriber.child.kill("SIGTERM");
  await subscriber.exit;
  say("\nAll five steps ran.");

  await fleet();
}

/** The walkthrough's services once more, with a little traffic, their /metrics and the dashboard. */
async function fleet(): Promise<void> {
  say("\n── The fleet: every node serves Prometheus /metrics on its port; `tsmicro web` reads them");
  const server = part("server");
  const address = /ready at (\S+)/.exec(await server.line(/ready at/))![1]!;
  const messages = part("subscriber");
  await messages.line(/subscribed to/);
  // The user service of step 4, in this process: it calls student_service and publishes Students.
  const user = new Service({ name: "user_service", version: "latest" });
  await user.start();
  const students = createClient(StudentManager, "student_service", user);
  const student = create(StudentSchema, { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" });
  const traffic = async () => {
    await students.getStudent({ name: "davie" });
    await students.getStudent({ name: "bob" }).catch(() => {}); // a 404, to show an error rate
    await user.publish("go.micro.srv.message", student, { schema: StudentSchema, header: { name: "davie" } });
  };
  for (let i = 0; i < 3; i++) await traffic();
  const metrics = await (await fetch(`http://${address}/metrics`)).text();
  say(`  metrics : http://${address}/metrics (student_service), e.g.`);
  for (const line of metrics.split("\n").filter((l) => l.startsWith("micro_server_requests_total{"))) say(`            ${line.replace(/,node_service="[^"]*",node_id="[^"]*"/, "")}`);
  const web = part("dashboard", ["web", "--address", "127.0.0.1:0"], [TSMICRO]);
  const url = /dashboard on (\S+)/.exec(await web.line(/^dashboard on /))![1]!;
  const page = await fetch(url);
  say(`  web     : ${url} (HTTP ${page.status}): endpoint rates and latency, the topic go.micro.srv.message, node health`);

  if (keepRunning) {
    say("  Running with a call and an event every second until Ctrl-C.");
    const timer = setInterval(() => void traffic().catch(() => {}), 1000);
    await new Promise((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    clearInterval(timer);
  } else {
    say("  (npm run demo -- --dashboard keeps them running, with a call and an event every second, until Ctrl-C)");
  }
  for (const p of [web, messages, server]) p.child.kill("SIGTERM");
  await Promise.all([web.exit, messages.exit, server.exit]);
  await user.stop();
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`demo failed: ${err.message}`);
    process.exit(1);
  },
);
