/**
 * What every benchmark child process runs: the harness (harness.ts) forks it, tells it which
 * role of which system to start, and drives it over the IPC channel.
 */
import v8 from "node:v8";
import { closedLoop, Recorder } from "./recorder.ts";
import type { FromWorker, Role, Roles, ToWorker } from "./role.ts";

/** Serves the harness's requests; loadRoles gives a system's roles by name. */
export function runWorker(loadRoles: (system: string) => Promise<Roles>): void {
  const send = (msg: FromWorker) => process.send!(msg);
  const fail = (err: unknown) => send({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  let role: Role = {};
  const opRecorder = new Recorder();
  let stopLoad = () => {};

  const start = async (msg: Extract<ToWorker, { cmd: "start" }>) => {
    const startRole = (await loadRoles(msg.system))[msg.role];
    if (!startRole) throw new Error(`system ${msg.system} has no role ${msg.role}`);
    role = await startRole(msg.ctx);
    send({ type: "ready", info: role.info ?? null });
  };

  process.on("message", (msg: ToWorker) => {
    switch (msg.cmd) {
      case "start":
        start(msg).catch(fail);
        break;
      case "load":
        if (role.external) return role.external.load(msg.concurrency);
        if (!role.op) return fail(new Error("this role generates no load"));
        stopLoad = closedLoop(role.op, msg.concurrency, opRecorder, fail);
        break;
      case "mark": {
        if (role.external) {
          role.external.mark().then((m) => send({ type: "mark", ...m }), fail);
          break;
        }
        const cpu = process.cpuUsage();
        const stats = (role.recorder ?? opRecorder).take();
        send({ type: "mark", cpuMicros: cpu.user + cpu.system, rss: process.memoryUsage().rss, stats, youngGeneration: youngGeneration() });
        break;
      }
      case "exit":
        stopLoad();
        process.exit(0); // a normal exit, so --cpu-prof writes its profile
    }
  });
  process.on("uncaughtException", fail);
  process.on("unhandledRejection", fail);
  process.on("disconnect", () => process.exit(0)); // the harness is gone
}

/** Bytes V8 has reserved for its young generation (new space); it grows in steps under load, up to a maximum. */
const youngGeneration = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.space_size ?? 0;
