/**
 * The seed's Student event as JSON vs protobuf: body bytes, encodes/s and decodes/s through the
 * codecs tsmicro puts on the wire. Standalone:
 *   npx tsx bench/codec.ts [milliseconds per measurement, default 500]
 * or import codecBench() for the rows.
 */
import { pathToFileURL } from "node:url";
import { create, type DescMessage } from "@bufbuild/protobuf";
import { JSON_TYPE, PROTOBUF_TYPE, codecFor } from "../src/index.ts";
import { StudentSchema } from "../examples/student/gen/student_pb.ts";

export interface CodecRow {
  codec: string;
  contentType: string;
  bytes: number;
  encodePerSec: number;
  decodePerSec: number;
}

interface Case {
  codec: string;
  contentType: string;
  message: unknown;
  schema?: DescMessage;
}

const fields = { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" };

const CASES: Case[] = [
  // What the tutorial's go-micro code sends: a plain object through JSON, untyped on receipt.
  { codec: "JSON, plain object", contentType: JSON_TYPE, message: { ...fields } },
  { codec: "JSON, proto3 typed", contentType: JSON_TYPE, message: create(StudentSchema, fields), schema: StudentSchema },
  { codec: "protobuf, typed", contentType: PROTOBUF_TYPE, message: create(StudentSchema, fields), schema: StudentSchema },
];

/** Runs op in batches for about durationMs; returns how many ran and in how many nanoseconds. */
function runFor(op: () => number, durationMs: number): { ops: number; ns: number } {
  let sink = 0; // consumed below, so the work cannot be optimised away
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(durationMs * 1e6));
  let ops = 0;
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < 1000; i++) sink += op();
    ops += 1000;
    now = process.hrtime.bigint();
  }
  if (sink < 0) throw new Error("unreachable");
  return { ops, ns: Number(now - start) };
}

/** Operations per second of op, measured after a warm-up long enough for the JIT to settle. */
function opsPerSecond(op: () => number, durationMs: number): number {
  runFor(op, Math.max(200, durationMs / 2));
  const { ops, ns } = runFor(op, durationMs);
  return Math.round(ops / (ns / 1e9));
}

export function codecBench({ durationMs = 500 }: { durationMs?: number } = {}): CodecRow[] {
  return CASES.map(({ codec: label, contentType, message, schema }) => {
    const codec = codecFor(contentType)!;
    const body = codec.encode(message, schema);
    return {
      codec: label,
      contentType,
      bytes: body.length,
      encodePerSec: opsPerSecond(() => codec.encode(message, schema).length, durationMs),
      decodePerSec: opsPerSecond(() => (codec.decode(body, schema) === undefined ? 0 : 1), durationMs),
    };
  });
}

export function formatCodecRows(rows: CodecRow[]): string {
  const header = ["codec", "bytes", "encode/s", "decode/s"];
  const cells = rows.map((r) => [r.codec, String(r.bytes), r.encodePerSec.toLocaleString("en-US"), r.decodePerSec.toLocaleString("en-US")]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join("  ");
  return [line(header), ...cells.map(line)].join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const durationMs = Number(process.argv[2] ?? 500);
  if (!(durationMs > 0)) {
    console.error(`bench/codec: the measurement time must be a positive number of milliseconds, not "${process.argv[2]}"`);
    process.exit(2);
  }
  console.log(`Student {name, classes, grade, phone} (the seed's event), Node ${process.version}, ${durationMs} ms per measurement`);
  console.log(formatCodecRows(codecBench({ durationMs })));
}
