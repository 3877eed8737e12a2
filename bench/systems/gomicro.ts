/**
 * go-micro's roles (v5, its defaults: http transport, http broker): each runs bench/go's program,
 * which generates and measures its own load; this worker only relays the harness's commands to it
 * over stdin and its JSON lines back (see bench/go/main.go).
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { ExternalRole, Role, RoleContext, Roles } from "../role.ts";

type Line = { ready?: unknown; mark?: Awaited<ReturnType<ExternalRole["mark"]>>; fatal?: string };

function goRole(role: string) {
  return (ctx: RoleContext): Promise<Role> => {
    const binary = process.env.BENCH_GOMICRO_BINARY;
    if (!binary) throw new Error("BENCH_GOMICRO_BINARY is not set: bench/run.ts builds bench/go and passes the program on");
    const child = spawn(binary, [], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", BENCH_ROLE: role, BENCH_PEER: JSON.stringify(ctx.peer), BENCH_TOPIC: `${ctx.namespace}.events` },
      stdio: ["pipe", "pipe", "pipe"],
    });
    process.once("exit", () => child.kill("SIGKILL"));
    const stderr: string[] = [];
    createInterface({ input: child.stderr! }).on("line", (l) => stderr.push(l) > 20 && stderr.shift());
    const waiting: Array<(line: Line) => void> = [];
    const died = (why: string) => new Error(`go-micro ${role}: ${why}\n${stderr.slice(-5).join("\n")}`);
    createInterface({ input: child.stdout! }).on("line", (text) => {
      const line = JSON.parse(text) as Line;
      if (line.fatal) throw died(line.fatal);
      waiting.shift()?.(line);
    });
    child.once("exit", (code) => {
      if (waiting.length > 0) throw died(`exited (${code})`);
    });
    const next = () => new Promise<Line>((resolve) => waiting.push(resolve));
    const external: ExternalRole = {
      load: (concurrency) => void child.stdin!.write(`load ${concurrency}\n`),
      mark: async () => {
        const line = next();
        child.stdin!.write("mark\n");
        return (await line).mark!;
      },
    };
    return next().then((line) => ({ info: line.ready, external }));
  };
}

export const roles: Roles = {
  server: goRole("server"),
  client: goRole("client"),
  subscriber: goRole("subscriber"),
  publisher: goRole("publisher"),
};
