/**
 * A transport written outside src/ with tsmicro's public API, as a third party would: one JSON
 * object per line, one connection per call. Its first byte is "{", which neither tcp frames
 * (< 0x20) nor an HTTP method starts with; servers ask it before the built-ins, so they tell it
 * apart on their one port once it is registered (`transports.register("line", lineTransport)`).
 *   request:  {"service","endpoint","contentType","headers","body":<base64>}\n
 *   response: {"contentType","body":<base64>}\n  or  {"error":<go-micro error>}\n
 */
import net from "node:net";
import {
  MicroError,
  internalServerError,
  timeout,
  type ClientTransport,
  type Dispatch,
  type ServeOptions,
  type Transport,
  type TransportRequest,
  type TransportResponse,
} from "../../../src/index.ts";

/** A failure of the connection or a timeout: the client may retry it on another node. */
function retryable(err: MicroError): MicroError {
  err.retryable = true;
  return err;
}

interface Line {
  service?: string;
  endpoint?: string;
  contentType?: string;
  headers?: Record<string, string>;
  body?: string;
  error?: MicroError;
}

/** Calls every complete line of the stream with its parsed JSON. */
function onLines(socket: net.Socket, head: Buffer, each: (line: Line) => void): void {
  let buffered = "";
  const take = (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    let end;
    while ((end = buffered.indexOf("\n")) >= 0) {
      const text = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      try {
        each(JSON.parse(text) as Line);
      } catch {
        socket.destroy();
      }
    }
  };
  socket.on("data", take);
  if (head.length > 0) take(head);
}

const send = (socket: net.Socket, line: Line) => socket.write(`${JSON.stringify(line)}\n`);

class LineClient implements ClientTransport {
  /** Calls made, so a test can tell this transport carried them. */
  calls = 0;

  request(address: string, req: TransportRequest, timeoutMs: number): Promise<TransportResponse> {
    this.calls++;
    const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(retryable(timeout("go.micro.client", `line: no answer from ${address} within ${timeoutMs}ms`)));
      }, timeoutMs);
      const settle = () => {
        clearTimeout(timer);
        socket.end();
      };
      socket.on("error", (err) => (settle(), reject(retryable(internalServerError("go.micro.client", `line: ${address}: ${err.message}`)))));
      socket.on("connect", () => send(socket, { service: req.service, endpoint: req.endpoint, contentType: req.contentType, headers: req.headers, body: Buffer.from(req.body).toString("base64") }));
      onLines(socket, Buffer.alloc(0), (line) => {
        settle();
        if (line.error) reject(MicroError.parse(JSON.stringify(line.error)));
        else resolve({ contentType: line.contentType ?? "application/json", body: Buffer.from(line.body ?? "", "base64") });
      });
    });
  }

  async close(): Promise<void> {}

  toString(): string {
    return "line";
  }
}

/** Every dialer this transport made, newest last. */
export const lineClients: LineClient[] = [];
/** Requests its servers dispatched. */
export let lineServed = 0;

function serve(socket: net.Socket, head: Buffer, dispatch: Dispatch, opts: ServeOptions): void {
  onLines(socket, head, (line) => {
    lineServed++;
    const req: TransportRequest = {
      service: line.service ?? "",
      endpoint: line.endpoint ?? "",
      contentType: line.contentType ?? "application/json",
      headers: line.headers ?? {},
      body: Buffer.from(line.body ?? "", "base64"),
    };
    void opts.track(
      dispatch(req).then((res) =>
        send(socket, res instanceof MicroError ? { error: res } : { contentType: res.contentType, body: Buffer.from(res.body).toString("base64") }),
      ),
    );
  });
}

export const lineTransport: Transport = {
  name: "line",
  dial() {
    const client = new LineClient();
    lineClients.push(client);
    return client;
  },
  detect: (head) => head[0] === 0x7b, // "{"
  listen: (dispatch, opts) => ({
    serve: (socket, head) => serve(socket, head, dispatch, opts),
    refuse: (socket, _head, err) => void socket.end(`${JSON.stringify({ error: err })}\n`),
    close() {},
  }),
};
