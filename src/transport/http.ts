/**
 * go-micro's HTTP transport, so go-micro clients and servers and tsmicro call each other, and a
 * human can curl a node:
 *   curl -H 'Micro-Endpoint: StudentManager.GetStudent' -H 'Content-Type: application/json' \
 *        -d '{"name":"davie"}' http://127.0.0.1:PORT/
 * The endpoint may also be the path: POST /StudentManager.GetStudent. A go-micro caller (it sends
 * Micro-Service) gets go-micro's answer to an error: HTTP 200, empty body, the error JSON in
 * Micro-Error (go-micro turns any other status into a generic 500 and loses the code). Other
 * callers get the error's code as HTTP status and the error JSON as body too.
 */
import type { Agent, Server, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import { http } from "../builtins.ts";
import { parseHostPort } from "../address.ts";
import { MicroError, badRequest, internalServerError, methodNotAllowed, notFound, requestEntityTooLarge } from "../errors.ts";
import { callTimeout, connectionError, headerSafeJSON } from "./errors.ts";
import { answerClientErrors, answerOnSocket, decodePath, trickleProofTimeouts } from "./http-guard.ts";
import { httpsModule } from "./secure.ts";
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  HEADER,
  canonicalHeaderKey,
  type ClientTransport,
  type ClientTransportOptions,
  type Dispatch,
  type MetricsSource,
  type Headers,
  type ServeOptions,
  type Transport,
  type TransportRequest,
  type TransportResponse,
} from "./transport.ts";

/** Header names that belong to HTTP itself and are not call metadata. */
const HOP_HEADERS = new Set(["host", "connection", "content-length", "transfer-encoding", "keep-alive", "accept-encoding", "user-agent", "accept"]);

export class HttpClientTransport implements ClientTransport {
  private readonly agent: Agent;
  private readonly maxMessageSize: number;
  private readonly secure: boolean;

  constructor(opts: ClientTransportOptions = {}) {
    const agent = { keepAlive: true, maxSockets: Math.max(1, opts.poolSize ?? 64) };
    this.agent = opts.tls ? new (httpsModule().Agent)({ ...agent, ...opts.tls }) : new http.Agent(agent);
    this.secure = opts.tls !== undefined;
    this.maxMessageSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  }

  request(address: string, req: TransportRequest, timeoutMs: number): Promise<TransportResponse> {
    return new Promise((resolve, reject) => {
      const { host, port } = parseHostPort(address);
      const r = (this.secure ? httpsModule() : http).request(
        {
          agent: this.agent,
          host,
          port,
          method: "POST",
          path: "/",
          headers: {
            ...req.headers,
            [HEADER.service]: req.service,
            [HEADER.endpoint]: req.endpoint,
            [HEADER.method]: req.endpoint,
            [HEADER.contentType]: req.contentType,
            Accept: req.contentType,
            [HEADER.id]: req.headers[HEADER.id] ?? randomUUID(),
            "Content-Length": req.body.length,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > this.maxMessageSize) res.destroy(new Error(`response exceeds the ${this.maxMessageSize} byte limit`));
            else chunks.push(c);
          });
          res.on("error", (err) => reject(connectionError(address, err)));
          res.on("end", () => {
            clearTimeout(timer);
            const body = Buffer.concat(chunks);
            const status = res.statusCode ?? 500;
            const errorHeader = res.headers[HEADER.error.toLowerCase()];
            // go-micro servers answer errors with a 200 carrying Micro-Error.
            if (typeof errorHeader === "string" && errorHeader !== "") reject(MicroError.parse(errorHeader));
            else if (status >= 200 && status < 300) resolve({ contentType: String(res.headers["content-type"] ?? req.contentType), body });
            else reject(MicroError.parse(body.toString()));
          });
        },
      );
      const timer = setTimeout(() => {
        r.destroy();
        reject(callTimeout(address, timeoutMs));
      }, timeoutMs);
      r.on("error", (err) => {
        clearTimeout(timer);
        reject(connectionError(address, err));
      });
      r.end(req.body);
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  toString(): string {
    return this.secure ? "https" : "http";
  }
}

function writeError(res: ServerResponse, err: MicroError, goMicroCaller = false): void {
  if (goMicroCaller) {
    res.writeHead(200, { [HEADER.error]: headerSafeJSON(err), "Content-Length": 0 });
    res.end();
    return;
  }
  const body = JSON.stringify(err);
  res.writeHead(err.code >= 400 && err.code < 600 ? err.code : 500, {
    [HEADER.contentType]: "application/json",
    [HEADER.error]: headerSafeJSON(err),
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
}

function serveMetrics(res: ServerResponse, metrics: MetricsSource | undefined, serverId: string): void {
  if (!metrics) {
    writeError(res, notFound(serverId, "metrics are off on this node"));
    return;
  }
  metrics().then(
    ({ contentType, body }) => {
      res.writeHead(200, { [HEADER.contentType]: contentType, "Content-Length": Buffer.byteLength(body) });
      res.end(body);
    },
    (err: Error) => writeError(res, internalServerError(serverId, `cannot collect metrics: ${err.message}`)),
  );
}

/** An http.Server that turns POSTs into dispatched requests; sockets are handed to it by the RPC server. */
function createHttpHandler(dispatch: Dispatch, opts: ServeOptions): Server {
  const server = http.createServer(trickleProofTimeouts(opts.headerTimeoutMs, opts.readTimeoutMs), (req, res) => {
    if (opts.draining()) res.setHeader("Connection", "close");
    if (req.method === "GET" && (req.url === "/health" || req.url === "/healthz")) {
      const body = JSON.stringify(opts.health());
      res.writeHead(200, { [HEADER.contentType]: "application/json", "Content-Length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (req.method === "GET" && req.url === "/metrics") {
      serveMetrics(res, opts.metrics, opts.serverId);
      return;
    }
    if (req.method !== "POST") {
      writeError(res, methodNotAllowed(opts.serverId, `method ${req.method} not allowed: POST a request body`));
      return;
    }
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > opts.maxMessageSize) {
      res.setHeader("Connection", "close");
      writeError(res, requestEntityTooLarge(opts.serverId, `request body of ${declared} bytes exceeds the ${opts.maxMessageSize} byte limit`));
      req.resume();
      return;
    }
    const callerGone = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) callerGone.abort(new Error("the caller's connection closed"));
    });
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > opts.maxMessageSize) tooLarge = true;
      else chunks.push(c);
    });
    req.on("end", () => {
      if (tooLarge) {
        writeError(res, requestEntityTooLarge(opts.serverId, `request body exceeds the ${opts.maxMessageSize} byte limit`));
        return;
      }
      const headers: Headers = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (!HOP_HEADERS.has(k) && typeof v === "string") headers[canonicalHeaderKey(k)] = v; // Node lower-cases them
      }
      headers[HEADER.id] ??= randomUUID(); // a caller that sent none (curl) gets one, as on tcp
      const pathEndpoint = decodePath(req.url);
      if (pathEndpoint === undefined) {
        writeError(res, badRequest(opts.serverId, "malformed percent-escape in the request path"));
        return;
      }
      const request: TransportRequest = {
        service: headers[HEADER.service] ?? "",
        endpoint: headers[HEADER.endpoint] ?? pathEndpoint,
        contentType: headers[HEADER.contentType] ?? "application/json",
        headers,
        body: Buffer.concat(chunks, size),
        signal: callerGone.signal,
      };
      void opts.track(
        dispatch(request).then((out) => {
          if (out instanceof MicroError) return writeError(res, out, request.service !== "");
          res.writeHead(200, { [HEADER.contentType]: out.contentType, "Content-Length": out.body.length });
          res.end(out.body);
        }),
      );
    });
  });
  // Sockets are handed over by the server (never listen()ed here), and Node starts checking its
  // header and request timeouts on "listening": announce it, or a trickle would hold a socket forever.
  server.emit("listening");
  server.setTimeout(opts.readTimeoutMs); // and an idle socket is cut off
  answerClientErrors(server, opts.serverId);
  server.keepAliveTimeout = 60_000;
  return server;
}

export const httpTransport: Transport = {
  name: "http",
  dial: (opts) => new HttpClientTransport(opts),
  // Every connection that is not tcp frames: a request line, or garbage that gets HTTP's 400.
  detect: (head) => head[0]! >= 0x20,
  listen(dispatch, opts) {
    const server = createHttpHandler(dispatch, opts);
    return {
      serve(socket, head) {
        socket.unshift(head);
        server.emit("connection", socket);
      },
      refuse: (socket, _head, err) => answerOnSocket(socket, err),
      close: () => server.close(), // stops its timeout checks
    };
  },
};
