/** Reading the Prometheus text exposition format (version 0.0.4), as every node serves it at GET /metrics. */

export type Labels = Record<string, string>;

export interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const ESCAPES: Record<string, string> = { "\\": "\\", '"': '"', n: "\n" };

/** Every sample of the text; comments (# HELP, # TYPE) and blank lines are skipped. Throws on a malformed line. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    try {
      samples.push(parseLine(line));
    } catch (err) {
      throw new Error(`metrics line ${index + 1}: ${(err as Error).message}: ${line}`);
    }
  });
  return samples;
}

function parseLine(line: string): Sample {
  const name = NAME.exec(line)?.[0];
  if (!name) throw new Error("no metric name");
  let rest = line.slice(name.length);
  const labels: Labels = {};
  if (rest.startsWith("{")) {
    rest = rest.slice(1).trimStart();
    while (!rest.startsWith("}")) {
      const label = LABEL_NAME.exec(rest)?.[0];
      if (!label) throw new Error("bad label name");
      rest = rest.slice(label.length).trimStart();
      if (!rest.startsWith('="')) throw new Error(`label ${label} has no quoted value`);
      let value = "";
      let i = 2;
      for (; i < rest.length && rest[i] !== '"'; i++) {
        if (rest[i] === "\\") value += ESCAPES[rest[++i] ?? ""] ?? `\\${rest[i] ?? ""}`;
        else value += rest[i];
      }
      if (i >= rest.length) throw new Error(`label ${label} is not closed`);
      labels[label] = value;
      rest = rest.slice(i + 1).trimStart();
      if (rest.startsWith(",")) rest = rest.slice(1).trimStart();
      else if (!rest.startsWith("}")) throw new Error("expected , or } after a label");
    }
    rest = rest.slice(1);
  }
  // The value, then an optional timestamp, which a live view has no use for.
  const [value] = rest.trim().split(/\s+/);
  const number = parseValue(value ?? "");
  if (Number.isNaN(number) && value !== "NaN") throw new Error(`bad value ${value}`);
  return { name, labels, value: number };
}

function parseValue(value: string): number {
  if (value === "+Inf" || value === "Inf") return Infinity;
  if (value === "-Inf") return -Infinity;
  return value === "" ? NaN : Number(value);
}
