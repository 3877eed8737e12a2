/**
 * node:tls and node:https, loaded by a node's first TLS connection or server: they cost a process
 * about 1.4 MB of RSS (TLS sockets, secure contexts, their crypto), which a plaintext node need
 * not pay (see load-on-use.ts).
 */
import { loadOnUse } from "../load-on-use.ts";

export const tlsModule = loadOnUse<typeof import("node:tls")>("node:tls");
export const httpsModule = loadOnUse<typeof import("node:https")>("node:https");
