/**
 * A plugin package as a third party would write one, outside src/ and using only tsmicro's public
 * API: importing it registers a registry, a broker, a codec and a selector strategy by name, and
 * exports wrappers. The extension test and its service fixture both import it.
 */
import { Buffer } from "node:buffer";
import {
  brokers,
  codecs,
  registries,
  selectors,
  type CallWrapper,
  type Codec,
  type HandlerWrapper,
} from "../../../src/index.ts";
import DirRegistry from "./dir-registry.ts";
import StampedBroker from "./stamped-broker.ts";

/** `--registry=dir:///some/dir`: services as JSON files in a directory, shared by processes on one machine. */
registries.register("dir", (opts) => new DirRegistry(opts));

/** `--broker=stamped://127.0.0.1:4222`: the built-in nats broker, resolved by name, with every message stamped. */
brokers.register("stamped", async (opts) => {
  const nats = await brokers.resolve("nats");
  return new StampedBroker(await nats({ ...opts, url: undefined }));
});

/** Content-Type application/x-b64json: JSON, base64-encoded (a codec the built-ins do not know). */
export const B64JSON = "application/x-b64json";
const b64json: Codec = {
  contentType: B64JSON,
  encode: (value) => Buffer.from(Buffer.from(JSON.stringify(value)).toString("base64")),
  decode: (body) => JSON.parse(Buffer.from(Buffer.from(body).toString(), "base64").toString()) as unknown,
};
codecs.register(B64JSON, b64json);

/** `--selector=lowest`: always the node with the smallest id (deterministic, unlike random). */
selectors.register("lowest", () => ({
  select: (nodes) => nodes.reduce((lowest, node) => (node.id < lowest.id ? node : lowest)),
}));

/** A client wrapper: names the caller in every attempt's metadata. */
export const callerHeader =
  (caller: string): CallWrapper =>
  (next) =>
  (call) => {
    call.request.headers["X-Caller"] = caller;
    return next(call);
  };

/** A handler wrapper: answers with what the handler returned plus the caller named in the metadata. */
export const echoCaller: HandlerWrapper = (next) => async (request, ctx) => ({
  ...((await next(request, ctx)) as object),
  caller: ctx.headers["X-Caller"] ?? null,
});
