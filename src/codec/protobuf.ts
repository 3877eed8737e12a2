/**
 * @bufbuild/protobuf, loaded on first use. Importing it costs a process about 13 MB of RSS and a
 * larger young generation (longer scavenges), which a service that never meets a protobuf schema
 * should not pay. A schema only comes from code generated with the package, so by the time one is
 * used the package is loaded already, and require() of its ES module entry gives that same
 * instance (Node ≥ 20.19 requires ES modules; an older Node gets the package's CommonJS build).
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

type Protobuf = typeof import("@bufbuild/protobuf");
let runtime: Protobuf | undefined;

export function protobuf(): Protobuf {
  if (runtime) return runtime;
  const require = createRequire(import.meta.url);
  try {
    runtime = require(fileURLToPath(import.meta.resolve("@bufbuild/protobuf"))) as Protobuf;
  } catch {
    runtime = require("@bufbuild/protobuf") as Protobuf;
  }
  return runtime;
}
