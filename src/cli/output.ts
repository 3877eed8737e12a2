/** Human output of the command: aligned tables (bold headings on a terminal) and shapes. */
import type { Value } from "../registry/registry.ts";
import type { ShownEvent } from "./inspect.ts";

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

/** Columns padded to their widest cell; the last column is never padded. */
export function table(headings: string[], rows: string[][]): string {
  const widths = headings.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [bold(line(headings)), ...rows.map(line)].join("\n");
}

/** A go-micro Value as one line: "StudentRequest{name string, grade int32}"; "-" when absent. */
export function shape(value: Value | null | undefined): string {
  if (!value) return "-";
  if (!value.values?.length) return value.type;
  const fields = value.values.map((f) => `${f.name} ${f.values?.length ? shape(f) : f.type}`);
  return `${value.type}{${fields.join(", ")}}`;
}

export const keyValues = (m: Record<string, string> | undefined) =>
  Object.entries(m ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(" ") || "-";

/** One line per event: time, topic, the publisher's headers, then the body. */
export function eventLine(e: ShownEvent): string {
  const time = e.receivedAt.slice(11, 23);
  const headers = Object.keys(e.header).length ? ` ${keyValues(e.header)}` : "";
  const kind = e.encoding === "json" ? "" : ` [${e.encoding}${e.messageType ? ` ${e.messageType}` : ""}]`;
  const body = e.encoding === "json" || e.encoding === "protobuf-raw" ? JSON.stringify(e.body) : String(e.body);
  return `${time} ${e.topic}${headers}${kind} ${body}`;
}
