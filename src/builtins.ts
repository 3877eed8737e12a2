/**
 * Node's own modules that an ESM `import` would make expensive. From Node 22 on, importing a
 * built-in module builds its namespace from every export, reading lazy getters too: node:http's
 * WebSocket, MessageEvent and CloseEvent load undici, and with it http2, tls, zlib and
 * worker_threads (13–19 MB of RSS on Node 22–26, nodejs/node#59686); node:fs's read about 2.7 MB
 * more. require() hands over the module object and reads none of them.
 */
import { createRequire } from "node:module";
import type * as Fs from "node:fs";
import type * as Http from "node:http";

const require = createRequire(import.meta.url);

export const http = require("node:http") as typeof Http;
export const fs = require("node:fs") as typeof Fs;
