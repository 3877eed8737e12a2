/**
 * The default transport: persistent TCP connections carrying multiplexed length-prefixed frames
 * (frame.ts). One connection serves many concurrent calls, so there is no per-call handshake,
 * no HTTP parsing and writes of one event-loop turn leave in one packet (cork/uncork).
 */
import net from "node:net";
import { randomUUID } from "node:crypto";
import { parseHostPort } from "../address.ts";
import { MicroError, internalServerError, requestEntityTooLarge, serviceUnavailable } from "../errors.ts";
import { FrameKind, FrameReader, encodeFrame, encodeHeaderBlock, type Frame } from "./frame.ts";
import { callTimeout, connectionError } from "./errors.ts";
import { DeadlineTimer } from "../deadline-timer.ts";
import { tlsModule } from "./secure.ts";
import {
  DEFAULT_DIAL_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_PING_TIMEOUT_MS,
  HEADER,
  KEEPALIVE_DELAY_MS,
  type ClientTLS,
  type ClientTransport,
  type ClientTransportOptions,
  type Answer,
  type Dispatch,
  type Headers,
  type ServeOptions,
  type Transport,
  type TransportRequest,
  type TransportResponse,
} from "./transport.ts";

interface Pending {
  resolve(res: TransportResponse): void;
  reject(err: MicroError): void;
  /** performance.now() past which the call has timed out. */
  deadline: number;
  timeoutMs: number;
}

/** Bounded, since the keys come from callers. */
export const MAX_BLOCKS = 1024;

/** Encoded request header blocks by service, endpoint, content type and timeout (see requestHeaders()). */
const requestBlocks = new Map<string, Map<string, Map<string, Map<string, Buffer>>>>();
let requestBlockCount = 0;

/** Whether headers hold anything besides the Timeout header every call carries. */
function hasMetadata(headers: Headers): boolean {
  for (const key in headers) if (key !== HEADER.timeout) return true;
  return false;
}

const callHeaders = (req: TransportRequest): Headers => ({
  [HEADER.service]: req.service,
  [HEADER.endpoint]: req.endpoint,
  [HEADER.contentType]: req.contentType,
});

const blocksOf = (req: TransportRequest) => submap(submap(submap(requestBlocks, req.service), req.endpoint), req.contentType);

/**
 * A request's headers. Calls without metadata of their own reuse one encoded block per service,
 * endpoint, content type and timeout: the client's Timeout header (the server's deadline) repeats
 * call after call, and encoding a block per call for it cost a quarter of the calls per second.
 * Nested maps of the strings the call already has: a key joined from them per call cost as much
 * again in hashing.
 */
export function requestHeaders(req: TransportRequest): Headers | Buffer {
  if (hasMetadata(req.headers)) return { ...callHeaders(req), ...req.headers };
  const timeout = req.headers[HEADER.timeout];
  let blocks = blocksOf(req);
  let block = blocks.get(timeout ?? "");
  if (!block) {
    if (requestBlockCount++ >= MAX_BLOCKS) {
      requestBlocks.clear();
      requestBlockCount = 1;
      blocks = blocksOf(req); // the maps just looked up were cleared with the rest
    }
    block = encodeHeaderBlock(timeout === undefined ? callHeaders(req) : { ...callHeaders(req), [HEADER.timeout]: timeout });
    blocks.set(timeout ?? "", block);
  }
  return block;
}

function submap<V>(map: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let inner = map.get(key);
  if (!inner) map.set(key, (inner = new Map()));
  return inner;
}

/** Response header blocks by content type (a handful). */
const responseBlocks = new Map<string, Buffer>();
function responseHeaders(contentType: string): Buffer {
  let block = responseBlocks.get(contentType);
  if (!block) {
    if (responseBlocks.size >= MAX_BLOCKS) responseBlocks.clear();
    responseBlocks.set(contentType, (block = encodeHeaderBlock({ [HEADER.contentType]: contentType })));
  }
  return block;
}

/** A write function whose writes of one event-loop turn leave in one syscall (corked until the next tick). */
export function batchedWriter(socket: net.Socket): (data: Buffer) => void {
  let corked = false;
  return (data) => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(() => {
        corked = false;
        socket.uncork();
      });
    }
    socket.write(data);
  };
}

const NO_BYTES = Buffer.alloc(0);

/**
 * Frames a connection hands over per event-loop turn. A turn that took a whole batch (32 calls in
 * the bench) answered it as one write only once all of it was done, so client and server took
 * turns, each idle while the other worked; answering eight at a time lets the peer start on the
 * first answers while the rest are worked on (1.5-1.8x the calls per second on two cores).
 */
export const FRAMES_PER_TURN = 8;

interface ConnectionOptions {
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** Dial TLS with these. */
  tls?: ClientTLS;
}

/** One client connection to one node; calls are matched to responses by frame id. */
class Connection {
  private readonly socket: net.Socket;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private readonly write: (frame: Buffer) => void;
  /** One timer for all pending calls' deadlines: a timer per call kept the young generation busy (rpc bench). */
  private readonly deadlines = new DeadlineTimer((now) => {
    let next = Infinity;
    for (const [id, p] of this.pending) {
      if (p.deadline <= now) this.fail(id, callTimeout(this.address, p.timeoutMs));
      else next = Math.min(next, p.deadline);
    }
    return next;
  });
  /**
   * Half-open detection: a peer whose process is frozen keeps the connection open (its kernel even
   * answers TCP keepalive), so calls would wait out their whole timeout. Every ping interval of
   * silence sends a ping; silence past the ping timeout drops the connection, failing its calls
   * as retryable connection errors (the client retries them on another node).
   */
  private heartbeat?: NodeJS.Timeout;
  private heard = false;
  private silentMs = 0;
  readonly ready: Promise<void>;
  /** ready has resolved: requests need not wait for it. */
  connected = false;
  closed = false;

  constructor(
    private readonly address: string,
    maxMessageSize: number,
    private readonly liveness: ConnectionOptions,
    private readonly onClose: (c: Connection) => void,
  ) {
    const target = parseHostPort(address);
    const secure = liveness.tls;
    this.socket = secure ? tlsModule().connect({ ...target, ...secure, servername: net.isIP(target.host) ? undefined : target.host }) : net.connect(target);
    this.socket.setNoDelay(true);
    this.socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    this.write = batchedWriter(this.socket);
    this.ready = new Promise((resolve, reject) => {
      this.socket.once(secure ? "secureConnect" : "connect", () => {
        this.connected = true;
        this.heartbeat = setInterval(() => this.beat(), liveness.pingIntervalMs).unref();
        resolve();
      });
      this.socket.once("error", reject);
      this.socket.once("close", () => reject(new Error("connection closed before it was established")));
    });
    this.ready.catch(() => {}); // observed by request(); a failed dial must not be unhandled
    const reader = new FrameReader(maxMessageSize, {
      onFrame: (f) => f.kind !== FrameKind.Pong && this.settle(f),
      onOversize: (id, length) =>
        this.fail(id, internalServerError("go.micro.client", `response of ${length} bytes exceeds the ${maxMessageSize} byte limit`)),
      onCorrupt: (err) => this.socket.destroy(err),
      onPause: () => this.socket.pause(),
      onResume: () => this.socket.resume(),
    }, { shareHeaders: true, framesPerTurn: FRAMES_PER_TURN }); // a response's headers are only read here
    this.socket.on("data", (chunk: Buffer) => {
      this.heard = true;
      reader.push(chunk);
    });
    // Surfaced through "close" to every pending call, saying why (a TLS alert, a reset).
    let failure: Error | undefined;
    this.socket.on("error", (err) => (failure ??= err));
    this.socket.on("close", () => this.shutdown(failure ? `connection closed: ${failure.message}` : "connection closed"));
  }

  /** Calls waiting for the dial to finish. */
  dialWaiters = 0;

  get load(): number {
    return this.pending.size + this.dialWaiters;
  }

  request(req: TransportRequest, timeoutMs: number): Promise<TransportResponse> {
    const id = this.nextId;
    this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1;
    return new Promise((resolve, reject) => {
      const frame = encodeFrame(FrameKind.Request, id, requestHeaders(req), req.body); // a throw here rejects
      const deadline = performance.now() + timeoutMs;
      this.pending.set(id, { resolve, reject, deadline, timeoutMs });
      this.deadlines.include(deadline);
      this.write(frame);
    });
  }

  private beat(): void {
    if (this.heard) {
      this.heard = false;
      this.silentMs = 0;
      return;
    }
    this.silentMs += this.liveness.pingIntervalMs;
    if (this.silentMs < this.liveness.pingTimeoutMs) return this.write(encodeFrame(FrameKind.Ping, 0, NO_BYTES, NO_BYTES));
    this.socket.destroy();
    this.shutdown(`no answer to pings for ${this.silentMs}ms: the node is unresponsive`);
  }

  /** Removes a call; the last one out lets the deadline timer stop holding the process open. */
  private take(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    if (this.pending.size === 0) this.deadlines.stop();
    return p;
  }

  private settle(frame: Frame): void {
    const p = this.take(frame.id);
    if (!p) return; // timed out already
    if (frame.kind === FrameKind.Error) p.reject(MicroError.parse(frame.body.toString()));
    else p.resolve({ contentType: frame.headers[HEADER.contentType] ?? "application/json", body: frame.body });
  }

  private fail(id: number, err: MicroError): void {
    this.take(id)?.reject(err);
  }

  private shutdown(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    for (const id of [...this.pending.keys()]) this.fail(id, connectionError(this.address, reason));
    this.onClose(this);
  }

  /** Closes at once: the connection leaves its pool now, not when the socket's close event comes. */
  close(): void {
    this.socket.destroy();
    this.shutdown("connection closed");
  }
}

export class TcpClientTransport implements ClientTransport {
  private readonly pools = new Map<string, Connection[]>();
  private readonly poolSize: number;
  private readonly maxMessageSize: number;
  private readonly dialTimeoutMs: number;
  private readonly maxInFlight: number;
  private readonly liveness: ConnectionOptions;

  constructor(opts: ClientTransportOptions = {}) {
    this.liveness = { pingIntervalMs: opts.pingInterval ?? DEFAULT_PING_INTERVAL_MS, pingTimeoutMs: opts.pingTimeout ?? DEFAULT_PING_TIMEOUT_MS, tls: opts.tls };
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 10_000);
    this.poolSize = Math.max(1, opts.poolSize ?? 1);
    this.maxMessageSize = opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.dialTimeoutMs = opts.dialTimeout ?? DEFAULT_DIAL_TIMEOUT_MS;
  }

  request(address: string, req: TransportRequest, timeoutMs: number): Promise<TransportResponse> {
    const conn = this.connection(address);
    // A node that answers slower than it is called: fail fast rather than queue without bound (another node may take it).
    if (conn.load >= this.maxInFlight) {
      const err = serviceUnavailable("go.micro.client", `${address}: ${conn.load} calls in flight on each of its ${this.poolSize} connections`);
      err.retryable = true;
      return Promise.reject(err);
    }
    if (conn.connected) return conn.request(req, timeoutMs); // no wait on the settled dial
    const started = performance.now();
    const dialMs = Math.min(timeoutMs, this.dialTimeoutMs);
    let timer: NodeJS.Timeout | undefined;
    // An unanswered SYN is retried by the kernel for minutes: the dial gets the call's time (capped),
    // and a dial that runs out is dropped from the pool, so later calls dial afresh instead of queueing on it.
    conn.dialWaiters++;
    const dialed = new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => {
        conn.close();
        reject(new Error(`dial timeout: not connected within ${dialMs}ms`));
      }, dialMs);
      conn.ready.then(resolve, reject);
    }).finally(() => {
      clearTimeout(timer);
      conn.dialWaiters--;
    });
    return dialed.then(
      () => conn.request(req, Math.max(1, timeoutMs - (performance.now() - started))),
      (err: Error) => {
        throw connectionError(address, err);
      },
    );
  }

  /** The least-loaded pooled connection, opening a new one while the pool is not full. */
  private connection(address: string): Connection {
    let pool = this.pools.get(address);
    if (!pool) this.pools.set(address, (pool = []));
    let best: Connection | undefined;
    for (const c of pool) if (!best || c.load < best.load) best = c;
    if (best && (best.load === 0 || pool.length >= this.poolSize)) return best;
    const conn = new Connection(address, this.maxMessageSize, this.liveness, (c) => {
      const p = this.pools.get(address);
      if (!p) return;
      const i = p.indexOf(c);
      if (i >= 0) p.splice(i, 1);
      if (p.length === 0) this.pools.delete(address);
    });
    pool.push(conn);
    return conn;
  }

  async close(): Promise<void> {
    for (const pool of [...this.pools.values()]) for (const c of [...pool]) c.close();
    this.pools.clear();
  }

  toString(): string {
    return this.liveness.tls ? "tcp+tls" : "tcp";
  }
}

/** Serves tcp frames on an accepted socket (its already-read first bytes are passed in). */
function serveTcpConnection(socket: net.Socket, head: Buffer, dispatch: Dispatch, opts: ServeOptions): void {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
  const write = batchedWriter(socket);
  const send = (kind: FrameKind, id: number, headers: Headers | Buffer, body: Uint8Array) => {
    if (socket.destroyed) return;
    write(encodeFrame(kind, id, headers, body));
    // A peer that sends requests but does not read the answers: read no more of its requests until
    // it has taken what is queued, so its answers cannot pile up in our memory.
    if (socket.writableNeedDrain && !socket.isPaused()) {
      socket.pause();
      socket.once("drain", () => socket.resume());
    }
  };
  const sendError = (id: number, err: MicroError) => send(FrameKind.Error, id, {}, Buffer.from(JSON.stringify(err)));
  const reply = (id: number, answer: Answer) => {
    if (answer instanceof MicroError) sendError(id, answer);
    else send(FrameKind.Response, id, responseHeaders(answer.contentType), answer.body);
  };
  const answerNow = dispatch.immediate ?? dispatch;
  // The frame protocol has no per-call cancel: a caller is gone when its connection is.
  const callerGone = new AbortController();
  socket.once("close", () => callerGone.abort(new Error("the caller's connection closed")));

  // As on http, every request has a Micro-Id: the caller's, or one made here, UUID-shaped, random per
  // connection and counted per call (a randomUUID() per call cost the server 2-3% of its CPU).
  const idPrefix = randomUUID().slice(0, 24);
  let calls = 0;
  const requestId = { name: HEADER.id, next: () => idPrefix + (++calls).toString(16).padStart(12, "0") };

  const reader = new FrameReader(opts.maxMessageSize, {
    onFrame(frame) {
      if (frame.kind === FrameKind.Ping) return send(FrameKind.Pong, frame.id, NO_BYTES, NO_BYTES);
      if (frame.kind !== FrameKind.Request) return;
      const h = frame.headers;
      const req: TransportRequest = {
        service: h[HEADER.service] ?? "",
        endpoint: h[HEADER.endpoint] ?? "",
        contentType: h[HEADER.contentType] ?? "application/json",
        headers: h,
        body: frame.body,
        signal: callerGone.signal,
      };
      const id = frame.id;
      const answer = answerNow(req);
      // One still under way is tracked until it is written, so a draining server never cuts it off.
      if (answer instanceof Promise) void opts.track(answer.then((res) => reply(id, res)));
      else reply(id, answer);
    },
    onOversize(id, length) {
      sendError(id, requestEntityTooLarge(opts.serverId, `request body of ${length} bytes exceeds the ${opts.maxMessageSize} byte limit`));
    },
    onCorrupt() {
      socket.destroy();
    },
    onPause: () => socket.pause(),
    onResume: () => socket.resume(),
  }, { stamp: requestId, framesPerTurn: FRAMES_PER_TURN });
  // Idle keep-alive connections are fine; a connection stalled inside a frame is not.
  socket.setTimeout(opts.readTimeoutMs, () => {
    if (reader.pending) socket.destroy();
  });
  socket.on("error", () => {});
  socket.on("data", (chunk: Buffer) => reader.push(chunk));
  if (head.length > 0) reader.push(head);
}

/** The frame id of the first frame in head (0 if too little of it arrived), so a refusal answers that call. */
const firstFrameId = (head: Buffer) => (head.length >= 9 ? head.readUInt32BE(5) : 0);

export const tcpTransport: Transport = {
  name: "tcp",
  dial: (opts) => new TcpClientTransport(opts),
  // A frame starts with the high byte of its length; HTTP with a method letter.
  detect: (head) => head[0]! < 0x20,
  listen: (dispatch, opts) => ({
    serve: (socket, head) => serveTcpConnection(socket, head, dispatch, opts),
    refuse(socket, head, err) {
      socket.end(encodeFrame(FrameKind.Error, firstFrameId(head), {}, Buffer.from(JSON.stringify(err))));
    },
    close() {},
  }),
};
