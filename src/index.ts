/** tsmicro's public API. */
export { Service, newService, type ServiceOptions, type InitOptions } from "./service.ts";
export { runMain } from "./run-main.ts";
export { Client, notFoundError, type CallOptions, type ClientOptions } from "./client/client.ts";
export { Server, type CallContext, type HandlerFn, type HandlerOptions } from "./server/server.ts";
export * from "./errors.ts";
export * from "./registry/registry.ts";
export type * from "./broker/broker.ts";
export { Selector, filterMetadata, filterVersion, type Strategy, type Filter, type SelectOptions } from "./selector/selector.ts";
export { codecFor, isProtoMessage, JSON_TYPE, PROTOBUF_TYPE, BYTES_TYPE, type Codec } from "./codec/codec.ts";
export { createRegistry, createBroker, parsePluginRef, MissingPackageError, UnknownPluginError } from "./cmd/plugins.ts";
export { FlagError, HelpRequested, FLAGS, fromArgv, fromEnv, parseDuration, usage } from "./cmd/flags.ts";
export {
  publishEvent,
  subscribeEvent,
  encodeEvent,
  decodeEvent,
  registerTypes,
  type EventHandler,
  type PublishEventOptions,
  type SubscribeEventOptions,
} from "./events.ts";
export { logger } from "./logger.ts";
export { createClient, type Caller, type ServiceClient, type ServiceImpl } from "./proto/service.ts";
export { describeMessage } from "./proto/describe.ts";
