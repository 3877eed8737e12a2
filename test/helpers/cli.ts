/** Running the `tsmicro` command and the test service it looks at, as child processes. */
import { fileURLToPath } from "node:url";
import { startProcess, startTs, type Proc } from "./net.ts";

const CLI = fileURLToPath(new URL("../../bin/tsmicro.js", import.meta.url));
const GREETER = fileURLToPath(new URL("../e2e/fixtures/greeter.ts", import.meta.url));

/** The environment without the MICRO_* settings of whoever runs the tests, plus extra. */
export const cleanEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("MICRO_"))),
  ...extra,
});

/** Starts `tsmicro <args>` through bin/tsmicro.js, as a user runs it. */
export const tsmicroProcess = (args: string[], env?: Record<string, string>): Proc =>
  startProcess(process.execPath, [CLI, ...args], { env: cleanEnv(env) });

/** Starts the greeter test service under a name of the test's own; resolves once it is registered. */
export async function startGreeter(name: string, flags: string[] = []): Promise<{ proc: Proc; nodeId: string; address: string }> {
  const proc = startTs(GREETER, [`--server_name=${name}`, ...flags], { env: cleanEnv() });
  const ready = await proc.waitForLine(/^ready /);
  const [, nodeId, address] = /^ready (\S+) at (\S+)$/.exec(ready)!;
  return { proc, nodeId: nodeId!, address: address! };
}
