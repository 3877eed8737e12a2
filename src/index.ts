/**
 * tsmicro's public API. Everything a public option accepts is exported here, including the base
 * classes plugin authors extend; internals (flag tables, the logger, wire helpers) are not.
 */
export { Service, newService, type ServiceOptions, type InitOptions, type Duration, type Hook, type ServiceSubscription } from "./service.ts";
export { runMain } from "./run-main.ts";
export { createLogger, traceMixin, type Logger } from "./logger.ts";
export type { ObservabilityOptions } from "./observability/observability.ts";
export { Client, notFoundError, type CallOptions, type ClientOptions } from "./client/client.ts";
export { Server, type CallContext, type HandlerFn, type HandlerOptions, type ServerOptions } from "./server/server.ts";
export * from "./errors.ts";
// The registry's record of a service is ServiceRecord here, so it never collides with the Service class.
export type {
  Service as ServiceRecord,
  Node,
  Endpoint,
  Value,
  Registry,
  RegistryOptions,
  RegisterOptions,
  WatchOptions,
  WatchAction,
  WatchEvent,
  Watcher,
} from "./registry/registry.ts";
export { RegistryBase, ServiceNotFoundError, RegistryUnavailableError, isNotFound } from "./registry/registry.ts";
// The broker's Event is BrokerEvent here, so it never hides the global Event.
export type { Broker, BrokerOptions, Message, Event as BrokerEvent, Handler, Subscriber, SubscribeOptions, PublishOptions } from "./broker/broker.ts";
export { NetworkBroker, type NetworkBrokerOptions, type NetworkSubscribeOptions } from "./broker/shared.ts";
export type {
  ClientTransport,
  ClientTransportOptions,
  ClientTLS,
  Answer,
  Dispatch,
  ServeOptions,
  ServerTLS,
  Transport,
  TransportListener,
  TransportRequest,
  TransportResponse,
  Headers,
} from "./transport/transport.ts";
export { getHeader } from "./transport/transport.ts";
export {
  wrap,
  type ClientCall,
  type CallFunc,
  type CallWrapper,
  type HandlerFunc,
  type HandlerWrapper,
  type Publication,
  type PublishFunc,
  type PublishWrapper,
  type SubscriberFunc,
  type SubscriberWrapper,
} from "./wrapper/wrapper.ts";
export {
  Selector,
  selectors,
  filterMetadata,
  filterVersion,
  type Strategy,
  type SelectionStrategy,
  type StrategyFactory,
  type Filter,
  type SelectOptions,
  type NodeHealth,
} from "./selector/selector.ts";
export { LatencyStrategy, type LatencyOptions } from "./selector/latency.ts";
export { NodeBreakers, CONNECTION_BREAKER, DEFAULT_BREAKER, isNodeFailure, type BreakerState, type BreakerStateChange, type CircuitBreakerOptions } from "./resilience/breaker.ts";
export { bulkheadWrapper, type BulkheadOptions } from "./resilience/bulkhead.ts";
export { rateLimitWrapper, perCaller, type RateLimitOptions } from "./resilience/rate-limit.ts";
export { RetryPolicy, type RetryOptions } from "./resilience/retry.ts";
export { codecs, codecFor, isProtoMessage, JSON_TYPE, PROTOBUF_TYPE, BYTES_TYPE, type Codec } from "./codec/codec.ts";
export { createRegistry, createBroker } from "./cmd/create.ts";
export {
  registries,
  brokers,
  transports,
  servedTransports,
  PluginKind,
  parsePluginRef,
  UnknownPluginError,
  type PluginRef,
  type PluginFactory,
  type RegistryFactory,
  type BrokerFactory,
} from "./cmd/plugins.ts";
export { importOptional, MissingPackageError } from "./cmd/optional-package.ts";
export { OptionError } from "./cmd/options.ts";
export { sharedToken, type Auth } from "./auth/auth.ts";
export { FlagError, HelpRequested, fromArgv, fromEnv, parseDuration, usage, type FlagOptions, type ParsedArgs } from "./cmd/flags.ts";
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
export { createClient, type Caller, type ServiceClient, type ServiceImpl } from "./proto/service.ts";
export { describeMessage } from "./proto/describe.ts";
