/** `npm run bench -- --smoke` runs every scenario for about a second and prints a row for each. */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { IDLE_SCENARIOS, LOAD_SCENARIOS } from "../../bench/scenarios.ts";
import { canConnect, skipOrFail, startTs } from "../helpers/net.ts";

let table = "";
let natsUp = false;

before(async () => {
  natsUp = await canConnect(4222);
  const bench = startTs("bench/run.ts", ["--smoke"]);
  const code = await bench.exited(400_000); // about 40 scenarios of a second or two each, on a shared machine
  assert.equal(code, 0, `bench --smoke failed:\n${bench.stderr().slice(-3000)}`);
  table = bench.stdout();
});

/** The first cell after a row's label. */
function firstFigure(label: string): string {
  const line = table.split("\n").find((l) => l.startsWith(`  ${label} `));
  assert.ok(line, `no row "${label}" in:\n${table}`);
  return line.slice(2 + label.length).trim();
}

for (const s of LOAD_SCENARIOS) {
  test(`bench smoke: ${s.id} has ops/s > 0`, (t) => {
    const figure = firstFigure(s.label);
    if (s.needsNats && !natsUp) {
      assert.match(figure, /skipped: NATS unreachable/);
      return skipOrFail(t, "NATS is not reachable on 127.0.0.1:4222", true);
    }
    const ops = Number(figure.split(/\s+/, 1)[0]!.replace(/,/g, ""));
    assert.ok(ops > 0, `row of ${s.id}: ${figure}`);
  });
}

for (const s of IDLE_SCENARIOS) {
  test(`bench smoke: ${s.id} reports its RSS`, () => {
    assert.match(firstFigure(s.label), /^\d+\.\d MB$/);
  });
}

test("bench smoke: the codec rows have encodes and decodes per second", () => {
  const rows = table.split("\n").filter((l) => / bytes · encode [\d,]+\/s · decode [\d,]+\/s$/.test(l));
  assert.ok(rows.length >= 2, `codec rows missing in:\n${table}`);
  for (const row of rows) for (const n of row.match(/[\d,]+(?=\/s)/g)!) assert.ok(Number(n.replace(/,/g, "")) > 0, row);
});
