#!/usr/bin/env node
// The `tsmicro` command without a build step: tsx compiles the TypeScript sources as they load.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
