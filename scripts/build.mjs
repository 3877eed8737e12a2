// Builds the published package: src/ → dist/ (ESM, .d.ts, maps) plus the dashboard's static files (type-checked).
// tsc rewrites "./x.ts" to "./x.js" in the JavaScript it emits but leaves the declarations' import
// paths as written, so those are rewritten here for consumers whose tools expect .js.
import { execFileSync } from "node:child_process";
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const dist = join(root, "dist");
rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });

const relativeTs = /((?:from\s+|import\()["']\.\.?\/[^"']+)\.ts(["'])/g;
for (const file of readdirSync(dist, { recursive: true, encoding: "utf8" })) {
  if (!file.endsWith(".d.ts")) continue;
  const path = join(dist, file);
  const text = readFileSync(path, "utf8");
  const fixed = text.replace(relativeTs, "$1.js$2");
  if (fixed !== text) writeFileSync(path, fixed);
}
// The dashboard's page is // @ts-check JavaScript served as written: checked here, then copied (not its tsconfig).
execFileSync(process.execPath, [tsc, "-p", join(root, "src/cli/web")], { stdio: "inherit" });
cpSync(join(root, "src/cli/web"), join(dist, "cli/web"), { recursive: true, filter: (path) => !path.endsWith("tsconfig.json") });
