/**
 * tsmicro as an outside project gets it: `npm pack`, a fresh project that installs the tarball,
 * compiles the README's server and client (and test/consumer/project) with the strictest common
 * tsc settings, and runs the emitted JavaScript with plain `node` — on this machine's Node and on
 * every release .ci/setup/node.sh keeps in $TSMICRO_CACHE_DIR/node-<version>/ (22, 24, 26).
 *   npm run test:consumer
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { cleanEnv } from "../helpers/cli.ts";
import { startProcess, waitUntil } from "../helpers/net.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PROJECT_FILES = fileURLToPath(new URL("./project", import.meta.url));
const CACHE = process.env.TSMICRO_CACHE_DIR ?? "/var/cache/tsmicro";
/** The releases CI must test besides the machine's own Node. */
const REQUIRED_MAJORS = [22, 24, 26];

/** The code blocks of README.md that follow `<!-- test/consumer runs these two files as written: NAME -->`. */
function readmeSnippets(): Map<string, string> {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const snippets = new Map<string, string>();
  for (const m of readme.matchAll(/<!-- test\/consumer runs [^:]*: (\S+) -->\n```ts\n([\s\S]*?)```/g)) snippets.set(m[1]!, m[2]!);
  return snippets;
}

/** This Node, then each release in the cache, oldest first. */
function nodeBinaries(): Array<{ version: string; path: string }> {
  const cached = (() => {
    try {
      return readdirSync(CACHE).filter((d) => /^node-\d+\.\d+\.\d+$/.test(d));
    } catch {
      return [];
    }
  })();
  const found = cached.map((d) => ({ version: d.slice("node-".length), path: join(CACHE, d, "bin", "node") }));
  found.sort((a, b) => a.version.localeCompare(b.version, "en", { numeric: true }));
  return [{ version: process.versions.node, path: process.execPath }, ...found];
}

const run = (cmd: string, args: string[], cwd: string): string =>
  execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: cleanEnv(), timeout: 300_000 });

const binaries = nodeBinaries();
let work = "";
let project = "";
let tarball = "";

before(async () => {
  const majors = new Set(binaries.map((b) => Number(b.version.split(".")[0])));
  const missing = REQUIRED_MAJORS.filter((m) => !majors.has(m));
  if (missing.length && process.env.CI === "true") throw new Error(`no Node ${missing.join(", ")} in ${CACHE}: run .ci/setup/node.sh`);
  if (missing.length) console.log(`# SKIPPED Node ${missing.join(", ")}: not in ${CACHE} (.ci/setup/node.sh installs them)`);

  work = mkdtempSync(join(tmpdir(), "tsmicro-consumer-"));
  const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", work], ROOT)) as Array<{ filename: string }>;
  tarball = join(work, packed[0]!.filename);

  project = join(work, "project");
  cpSync(PROJECT_FILES, project, { recursive: true });
  const snippets = readmeSnippets();
  assert.deepEqual([...snippets.keys()].sort(), ["client.ts", "server.ts"], "README snippets for the consumer test");
  for (const [name, code] of snippets) writeFileSync(join(project, "src", name), code);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }, null, 2));
  const typescript = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { devDependencies: Record<string, string> }).devDependencies.typescript!;
  run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball, `typescript@${typescript}`, "@types/node@^20"], project);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the packed tarball", () => {
  test("holds dist, sources, README and LICENSE only: no tests, bench or CI", () => {
    const files = execFileSync("tar", ["tzf", tarball], { encoding: "utf8" }).trim().split("\n");
    const outside = files.filter((f) => !/^package\/(dist\/|src\/|package\.json$|README\.md$|LICENSE$)/.test(f));
    assert.deepEqual(outside, []);
    assert.ok(files.includes("package/LICENSE"), "the Apache-2.0 text that package.json names");
    assert.ok(files.includes("package/dist/index.d.ts") && files.includes("package/dist/cli/web/index.html") && files.includes("package/dist/cli/web/fleet.js"));
    assert.ok(!files.includes("package/dist/cli/web/tsconfig.json"), "the page's tsconfig is for checking, not shipping");
  });

  test("publint and attw (ESM only) find no problems", () => {
    run(join(ROOT, "node_modules/.bin/publint"), ["run", "--strict", tarball], ROOT);
    run(join(ROOT, "node_modules/.bin/attw"), [tarball, "--profile", "esm-only"], ROOT);
  });

  test("the README's server and client and a typed user compile under the strictest tsc settings", () => {
    run(join(project, "node_modules/.bin/tsc"), ["-p", "."], project);
  });

  test("the installed project holds no tsx or esbuild", () => {
    const installed = readdirSync(join(project, "node_modules"));
    assert.ok(!installed.includes("tsx") && !installed.includes("esbuild"), installed.join(" "));
  });
});

for (const node of binaries) {
  describe(`Node ${node.version}`, () => {
    const start = (file: string, args: string[] = [], env: Record<string, string> = {}) =>
      startProcess(node.path, [file, ...args], { cwd: project, env: cleanEnv(env) });

    test("README server + client: a call and a publish/subscribe round trip on mdns and the http broker", async () => {
      const server = start("dist/server.js");
      try {
        await waitUntil(() => /Registered node/.test(server.stderr()) || server.child.exitCode !== null, 20_000, "the server registered");
        assert.equal(server.child.exitCode, null, server.stderr());
        // --port is the client program's own flag: tsmicro reads no argv unless init() is called.
        const client = start("dist/client.js", ["--port=3000"]);
        assert.equal(await client.exited(20_000), 0, client.stderr());
        assert.equal(client.stdout(), "Hello Ada\n");
        assert.equal(await server.waitForLine(/^event: /, 10_000), "event: hi from the client");
      } finally {
        server.signal("SIGTERM");
      }
      assert.equal(await server.exited(15_000), 0, server.stderr());
    });

    test("the server with a bad flag: one line, exit 2; --help: usage, exit 0", async () => {
      const bad = start("dist/server.js", ["--registyr=mdns"]);
      assert.equal(await bad.exited(10_000), 2);
      assert.equal(bad.stderr(), "server.js: unknown flag --registyr (see --help)\n");
      const help = start("dist/server.js", ["--help"]);
      assert.equal(await help.exited(10_000), 0);
      assert.match(help.stdout(), /^Usage: greeter \[flags\]/);
    });

    test("a missing client library: one line with the package and range, exit 1, no stack", async () => {
      const server = start("dist/server.js", ["--broker=mqtt"], { MICRO_LOG_LEVEL: "warn" });
      assert.equal(await server.exited(15_000), 1);
      assert.match(server.stderr(), /^server\.js: greeter: the mqtt plugin needs the "mqtt" package: npm install mqtt@\^5\.\d+\.\d+\n$/);
    });

    test("a plain .mjs user with a flag of its own keeps running", async () => {
      const app = start("app.mjs", ["--port=3000", "--registry=memory"]);
      assert.equal(await app.exited(15_000), 0, app.stderr());
      assert.deepEqual(JSON.parse(app.stdout()), { echoed: { args: ["--port=3000"] }, event: { hello: "world" }, registry: "memory" });
    });

    test("the tsmicro command runs with plain node, and finds its dashboard files", async () => {
      const version = start("node_modules/tsmicro/dist/cli/main.js", ["--version"]);
      assert.equal(await version.exited(10_000), 0, version.stderr());
      assert.equal(version.stdout(), `${(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version}\n`);
      const web = start("node_modules/tsmicro/dist/cli/main.js", ["web", "--registry=memory", "--address=127.0.0.1:0"]);
      try {
        const line = await web.waitForLine(/^dashboard on /, 15_000);
        const url = /(http:\/\/\S+)/.exec(line)![1]!;
        const page = await fetch(url);
        assert.equal(page.status, 200);
        assert.match(await page.text(), /<html/);
        // The page's modules, checked and copied by the build: each one it imports is served.
        for (const module of ["app.js", "dom.js", "fleet.js"]) {
          const res = await fetch(new URL(module, url));
          assert.equal(res.status, 200, module);
          assert.match(res.headers.get("content-type") ?? "", /^text\/javascript/, module);
          for (const [, imported] of (await res.text()).matchAll(/^import .* from "\.\/([^"]+)";$/gm)) {
            assert.equal((await fetch(new URL(imported!, url))).status, 200, `${module} imports ${imported}`);
          }
        }
      } finally {
        web.signal("SIGTERM");
      }
      await web.exited(10_000);
    });

    test("typed errors and plugin subpaths", async () => {
      const typed = start("dist/typed.js");
      assert.equal(await typed.exited(15_000), 0, typed.stderr());
      assert.deepEqual(JSON.parse(typed.stdout()), { id: "typed", code: 409, detail: "conflict", status: "Conflict" });
    });
  });
}
