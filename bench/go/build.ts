/**
 * Builds go-micro's side of the benchmark (bench/go, its own module, dependencies from the Go
 * module proxy) into $TSMICRO_CACHE_DIR/bench-gomicro-<hash>/gomicro unless it is there, and gives
 * its path. The hash covers go.mod, go.sum and the .go files, so a changed fixture builds anew.
 * A build goes to a temp folder first: an interrupted one leaves no half cache.
 * Run as a script (.ci/setup/bench.sh) it builds and prints the path.
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));

export function goMicroBinary(): string {
  const files = readdirSync(HERE).filter((f) => f === "go.mod" || f === "go.sum" || f.endsWith(".go")).sort();
  const hash = createHash("sha256");
  for (const f of files) hash.update(f).update(readFileSync(path.join(HERE, f)));
  const cache = process.env.TSMICRO_CACHE_DIR || "/var/cache/tsmicro";
  const dir = path.join(cache, `bench-gomicro-${hash.digest("hex").slice(0, 16)}`);
  const binary = path.join(dir, "gomicro");
  if (existsSync(binary)) return binary;
  mkdirSync(cache, { recursive: true });
  const tmp = mkdtempSync(path.join(cache, ".bench-gomicro-build."));
  try {
    execFileSync("go", ["build", "-mod=readonly", "-trimpath", "-o", path.join(tmp, "gomicro"), "."], { cwd: HERE, stdio: ["ignore", "inherit", "inherit"], timeout: 15 * 60_000 });
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`building the go-micro bench fixture failed (needs go and the Go module proxy): ${(err as Error).message.split("\n")[0]}`);
  }
  return binary;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(goMicroBinary());
