#!/usr/bin/env node
/**
 * The `tsmicro` command: find, inspect, call and watch services, and serve the dashboard.
 * It is a client-side Service, configured like any service: the same --registry, --broker, …
 * flags (parsed and validated by src/cmd/flags.ts) over MICRO_* environment over defaults.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { FLAGS, FlagError, helpText } from "../cmd/flags.ts";
import { MicroError } from "../errors.ts";
import { logger } from "../logger.ts";
import { parseHostPort } from "../address.ts";
import { Service } from "../service.ts";
import { allServices, checkHealth, lookup, showEvent } from "./inspect.ts";
import { eventLine, keyValues, shape, table } from "./output.ts";
import { startWeb } from "./web.ts";

/** Bad input on the command line: exit 2, like a bad flag. */
class UsageError extends Error {}

/** The flags a client needs; the server_* ones describe a service this command does not run. */
const CLIENT_FLAGS = FLAGS.filter((f) => !f.flag.startsWith("server_"));
/** --header takes k=v like --server_metadata, so it parses with that flag's parser. */
const parseKeyValue = FLAGS.find((f) => f.flag === "server_metadata")!.parse;

const DEFAULT_WEB_ADDRESS = "127.0.0.1:8082";

interface Context {
  service: Service;
  json: boolean;
}

function connect(cmd: Command): Context {
  const opts = cmd.optsWithGlobals<Record<string, string | boolean | undefined>>();
  // Handing the values back to the service as flags reuses their validation and precedence.
  const argv = CLIENT_FLAGS.flatMap((f) => (opts[f.flag] === undefined ? [] : [`--${f.flag}=${String(opts[f.flag])}`]));
  const service = new Service({ name: "tsmicro.cli", handleSignals: false }).init(argv);
  return { service, json: opts.json === true };
}

const print = (text: string): void => void process.stdout.write(`${text}\n`);
const printJson = (ctx: Context, value: unknown) => print(ctx.json ? JSON.stringify(value) : JSON.stringify(value, null, 2));

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

async function notFoundIn(ctx: Context, name: string): Promise<Error> {
  return new Error(`service ${name} not found in the ${await ctx.service.registry()} registry`);
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
}

/** Runs a command with a connected context; reports any failure as one line and exits with its code. */
function action<A extends unknown[]>(run: (ctx: Context, ...args: A) => Promise<number | void>) {
  return async (...args: unknown[]) => {
    const cmd = args.at(-1) as Command;
    let ctx: Context | undefined;
    let code = 0;
    try {
      ctx = connect(cmd);
      code = (await run(ctx, ...(args.slice(0, -1) as A))) ?? 0; // the arguments, then the command's options
    } catch (err) {
      code = report(err);
    }
    await ctx?.service.stop().catch(() => {});
    process.exit(code);
  };
}

function report(err: unknown): number {
  if (err instanceof MicroError) {
    process.stderr.write(`${err.toString()}\n`); // go-micro prints the error JSON
    return 1;
  }
  const message = (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, " ");
  process.stderr.write(`tsmicro: ${message}\n`);
  return err instanceof FlagError || err instanceof UsageError ? 2 : 1;
}

async function services(ctx: Context): Promise<number> {
  const registry = await ctx.service.registry();
  const rows = (await allServices(registry)).map((s) => ({ name: s.name, version: s.version, nodes: s.nodes.length }));
  if (ctx.json) print(JSON.stringify(rows));
  else if (rows.length === 0) process.stderr.write(`no services in the ${registry} registry\n`);
  else print(table(["NAME", "VERSION", "NODES"], rows.map((r) => [r.name, r.version, String(r.nodes)])));
  return 0;
}

async function describeService(ctx: Context, name: string): Promise<void> {
  const versions = await lookup(await ctx.service.registry(), name);
  if (versions.length === 0) throw await notFoundIn(ctx, name);
  if (ctx.json) return print(JSON.stringify(versions));
  const blocks = versions.map((s) =>
    [
      `${s.name} ${s.version}${s.metadata && Object.keys(s.metadata).length ? `  ${keyValues(s.metadata)}` : ""}`,
      "",
      table(["NODE", "ADDRESS", "METADATA"], s.nodes.map((n) => [n.id, n.address, keyValues(n.metadata)])),
      "",
      table(["ENDPOINT", "REQUEST", "RESPONSE"], (s.endpoints ?? []).map((e) => [e.name, shape(e.request), shape(e.response)])),
    ].join("\n"),
  );
  print(blocks.join("\n\n"));
}

async function call(ctx: Context, name: string, endpoint: string, body: string | undefined): Promise<void> {
  const request = parseJson(body ?? "{}", "request");
  printJson(ctx, await ctx.service.call(name, endpoint, request));
}

async function health(ctx: Context, name: string): Promise<number> {
  const versions = await lookup(await ctx.service.registry(), name);
  if (versions.length === 0) throw await notFoundIn(ctx, name);
  const results = await checkHealth(await ctx.service.client(), versions);
  if (ctx.json) print(JSON.stringify(results));
  else
    print(
      table(
        ["NODE", "ADDRESS", "VERSION", "STATUS", "LATENCY"],
        results.map((r) => [r.id, r.address, r.version, r.error ? `${r.status}: ${r.error.detail}` : r.status, `${r.latencyMs} ms`]),
      ),
    );
  return results.every((r) => r.status === "ok") ? 0 : 1;
}

async function publish(ctx: Context, topic: string, body: string, opts: { header?: Record<string, string> }): Promise<void> {
  const message = parseJson(body, "message");
  await ctx.service.publish(topic, message, { header: opts.header });
  const broker = String(await ctx.service.broker());
  print(ctx.json ? JSON.stringify({ topic, broker }) : `published to ${topic} via the ${broker} broker`);
}

async function subscribe(ctx: Context, topic: string, opts: { queue?: string }): Promise<void> {
  const broker = await ctx.service.broker();
  await broker.connect();
  await broker.subscribe(
    topic,
    (event) => {
      const shown = showEvent(event);
      print(ctx.json ? JSON.stringify(shown) : eventLine(shown));
    },
    { queue: opts.queue },
  );
  // On stderr, so that stdout holds only events (one JSON per line with --json).
  process.stderr.write(`subscribed to ${topic} via the ${broker} broker${opts.queue ? ` (queue ${opts.queue})` : ""}; Ctrl-C to stop\n`);
  await untilSignal();
}

async function web(ctx: Context, opts: { address: string }): Promise<void> {
  try {
    parseHostPort(opts.address);
  } catch (err) {
    throw new UsageError(`invalid value for --address: ${(err as Error).message}`);
  }
  const dashboard = await startWeb(ctx.service, opts.address);
  print(`dashboard on ${dashboard.url} (registry ${await ctx.service.registry()}, broker ${await ctx.service.broker()}); Ctrl-C to stop`);
  await untilSignal();
  await dashboard.close();
}

function program(): Command {
  const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  const cli = new Command("tsmicro")
    .description("Find, inspect, call and watch tsmicro (and go-micro) services.")
    .version(version)
    .option("--json", "machine-readable output (one JSON document, or one per line for subscribe)")
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, "tsmicro: ")) })
    .exitOverride() // inherited by the commands below: usage errors exit 2, not commander's 1
    .showHelpAfterError(false);
  for (const f of CLIENT_FLAGS) cli.option(`--${f.flag} <value>`, `${helpText(f)} [$MICRO_${f.flag.toUpperCase()}]`);

  cli.command("services").description("list the services of the registry").action(action(services));
  cli.command("service <name>").description("a service's versions, nodes and endpoints").action(action(describeService));
  cli
    .command("call <service> <endpoint> [request]")
    .description("call an endpoint with a JSON request (default {}) and print the response")
    .action(action(call));
  cli.command("health <service>").description("ask every node of a service for Debug.Health").action(action(health));
  cli
    .command("publish <topic> <message>")
    .description("publish a JSON message to a topic")
    .option("--header <k=v>", "message header (repeatable, or k=v,k2=v2)", (raw: string, prev?: Record<string, string>) => {
      try {
        return parseKeyValue(raw, prev) as Record<string, string>;
      } catch (err) {
        throw new UsageError(`invalid value for --header: ${(err as Error).message}`);
      }
    })
    .action(action(publish));
  cli
    .command("subscribe <topic>")
    .description("print each event of a topic until Ctrl-C")
    .option("--queue <group>", "join a queue group: each message goes to one member")
    .action(action(subscribe));
  cli
    .command("web")
    .description("serve the dashboard")
    .option("--address <host:port>", "where the dashboard listens", DEFAULT_WEB_ADDRESS)
    .action(action(web));
  return cli;
}

// The CLI reports failures itself, one line each; framework logs only when asked for.
logger.level = process.env.MICRO_LOG_LEVEL ?? "silent";

try {
  await program().parseAsync(process.argv);
} catch (err) {
  if (!(err instanceof CommanderError)) process.exit(report(err));
  process.exit(err.exitCode === 0 ? 0 : 2);
}
