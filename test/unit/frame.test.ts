import assert from "node:assert/strict";
import { test } from "node:test";
import { FrameKind, FrameReader, encodeFrame, type Frame } from "../../src/transport/frame.ts";

function collect(max = 1024) {
  const frames: Frame[] = [];
  const oversize: Array<[number, number]> = [];
  const corrupt: Error[] = [];
  const reader = new FrameReader(max, {
    onFrame: (f) => frames.push(f),
    onOversize: (id, len) => oversize.push([id, len]),
    onCorrupt: (e) => corrupt.push(e),
  });
  return { reader, frames, oversize, corrupt };
}

test("frames round-trip headers (UTF-8, keys canonicalised as on http) and bodies, whatever the chunking", () => {
  const a = encodeFrame(FrameKind.Request, 7, { "Micro-Endpoint": "S.M", name: "软件工程" }, Buffer.from("hello"));
  const b = encodeFrame(FrameKind.Response, 8, {}, Buffer.alloc(0));
  const stream = Buffer.concat([a, b]);
  for (const size of [1, 3, 11, stream.length]) {
    const { reader, frames } = collect();
    for (let i = 0; i < stream.length; i += size) reader.push(stream.subarray(i, i + size));
    assert.equal(frames.length, 2, `chunk size ${size}`);
    assert.deepEqual(frames[0]!.headers, { "Micro-Endpoint": "S.M", Name: "软件工程" });
    assert.equal(frames[0]!.body.toString(), "hello");
    assert.equal(frames[0]!.id, 7);
    assert.equal(frames[1]!.kind, FrameKind.Response);
    assert.equal(frames[1]!.body.length, 0);
    assert.equal(reader.pending, false);
  }
});

test("an oversized frame is reported with its id and skipped; the next frame still parses", () => {
  const { reader, frames, oversize } = collect(100);
  const big = encodeFrame(FrameKind.Request, 42, {}, Buffer.alloc(1000, 1));
  const next = encodeFrame(FrameKind.Request, 43, {}, Buffer.from("ok"));
  const stream = Buffer.concat([big, next]);
  for (let i = 0; i < stream.length; i += 64) reader.push(stream.subarray(i, i + 64));
  assert.deepEqual(oversize, [[42, big.length - 4]]);
  assert.deepEqual(frames.map((f) => f.id), [43]);
});

test("bytes that cannot be a frame are reported as corrupt", () => {
  const { reader, corrupt, frames } = collect();
  reader.push(Buffer.from([0, 0, 0, 2, 1, 0]));
  assert.equal(corrupt.length, 1);
  const bad = encodeFrame(FrameKind.Request, 1, { k: "v" }, Buffer.alloc(0));
  bad.writeUInt16BE(500, 9); // header block longer than the frame
  const second = collect();
  second.reader.push(bad);
  assert.equal(second.corrupt.length, 1);
  assert.equal(frames.length + second.frames.length, 0);
});

test("a stamped header is the sender's when it has one, else a new value per frame", () => {
  let n = 0;
  const frames: Frame[] = [];
  const reader = new FrameReader(1024, { onFrame: (f) => frames.push(f), onOversize: () => {}, onCorrupt: () => {} }, { stamp: { name: "Micro-Id", next: () => `id-${++n}` } });
  const bare = encodeFrame(FrameKind.Request, 1, { "Micro-Endpoint": "S.M" }, Buffer.alloc(0));
  reader.push(Buffer.concat([bare, bare, encodeFrame(FrameKind.Request, 2, { "micro-id": "mine" }, Buffer.alloc(0)), bare]));
  assert.deepEqual(
    frames.map((f) => f.headers),
    [
      { "Micro-Endpoint": "S.M", "Micro-Id": "id-1" },
      { "Micro-Endpoint": "S.M", "Micro-Id": "id-2" },
      { "Micro-Id": "mine" },
      { "Micro-Endpoint": "S.M", "Micro-Id": "id-3" },
    ],
  );
});

test("framesPerTurn hands over that many frames per event-loop turn, pausing the source until the rest are taken, in order", async () => {
  const ids: number[] = [];
  const flow: string[] = [];
  let resumed!: () => void;
  const done = new Promise<void>((resolve) => (resumed = resolve));
  const reader = new FrameReader(
    1024,
    {
      onFrame: (f) => ids.push(f.id),
      onOversize: () => {},
      onCorrupt: () => {},
      onPause: () => flow.push(`pause after ${ids.length}`),
      onResume: () => (flow.push(`resume after ${ids.length}`), resumed()),
    },
    { framesPerTurn: 3 },
  );
  const frames = Array.from({ length: 8 }, (_, i) => encodeFrame(FrameKind.Request, i + 1, {}, Buffer.from("x")));
  reader.push(Buffer.concat(frames.slice(0, 7)));
  assert.deepEqual(ids, [1, 2, 3]); // this turn's share
  reader.push(frames[7]!.subarray(0, 5)); // arrives while paused: kept, not read ahead of its turn
  reader.push(frames[7]!.subarray(5));
  assert.deepEqual(ids, [1, 2, 3]);
  await done;
  assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(flow, ["pause after 3", "pause after 6", "resume after 8"]);
  assert.equal(reader.pending, false);
});
