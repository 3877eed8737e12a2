/** The HTTP anchor: node:http server and keep-alive client, JSON in and out, nothing else. */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Roles } from "../role.ts";
import { ECHO_REQUEST, checkEchoResponse, hello, type EchoRequest } from "./echo.ts";

export const roles: Roles = {
  async server() {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = JSON.stringify(hello(JSON.parse(Buffer.concat(chunks).toString()) as EchoRequest));
        res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
        res.end(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { info: (server.address() as AddressInfo).port };
  },

  async client(ctx) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const body = JSON.stringify(ECHO_REQUEST);
    const op = () =>
      new Promise<unknown>((resolve, reject) => {
        const req = http.request(
          { agent, host: "127.0.0.1", port: ctx.peer as number, method: "POST", path: "/", headers: { "Content-Type": "application/json", "Content-Length": body.length } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString())));
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    checkEchoResponse(await op());
    return { op };
  },
};
