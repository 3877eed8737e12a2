#!/usr/bin/env node
// The `tsmicro` command inside this repository, without a build step: tsx compiles the TypeScript
// sources as they load. The published package's command is dist/cli/main.js (plain node).
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
