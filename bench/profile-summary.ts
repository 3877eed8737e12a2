/**
 * Summarises a V8 .cpuprofile (from `npm run bench -- --cpu-prof`): the functions with the most
 * self time, and the share of time per source file.
 *   node --import tsx bench/profile-summary.ts .tmp/profiles/rpc-tsmicro-tcp-client.cpuprofile [top]
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
}

const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error("usage: profile-summary.ts <file.cpuprofile> [top]");
const profile = JSON.parse(readFileSync(file, "utf8")) as { nodes: ProfileNode[] };
const top = Number(topArg ?? 30);

const total = profile.nodes.reduce((sum, n) => sum + n.hitCount, 0);
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
for (const { callFrame: f, hitCount } of profile.nodes) {
  const where = f.url.replace(/^.*\/(node_modules\/|src\/|bench\/)/, "$1") || "(native)";
  const name = `${f.functionName || "(anonymous)"}  ${where}:${f.lineNumber + 1}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + hitCount);
  byFile.set(where, (byFile.get(where) ?? 0) + hitCount);
}

const show = (title: string, entries: Map<string, number>) => {
  console.log(title);
  for (const [name, hits] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${((hits / total) * 100).toFixed(1).padStart(5)}%  ${name}`);
};
show(`self time by function (${total} samples)`, byFunction);
show("\nself time by file", byFile);
