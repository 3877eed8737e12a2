/** The benchmark child process under tsx: loads the system a scenario names from bench/systems. */
import type { Roles } from "./role.ts";
import { runWorker } from "./worker-runtime.ts";

runWorker(async (system) => ((await import(`./systems/${system}.ts`)) as { roles: Roles }).roles);
