/**
 * Typed clients and handlers from the service descriptors protoc-gen-es generates (what
 * protoc-gen-micro gives go-micro users), as mapped types: no extra plugin. Every unary rpc of
 * `service StudentManager` becomes the endpoint "StudentManager.GetStudent"; streaming rpcs have
 * no counterpart in the request/response RPC and are left out.
 *
 *   service.handle(StudentManager, { getStudent: (req) => ({ name: req.name, grade: 80 }) });
 *   const students = createClient(StudentManager, "student_service", service);
 *   const student = await students.getStudent({ name: "davie" }); // a typed Student
 */
import type { DescMessage, DescMethod, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { protobuf } from "../codec/protobuf.ts";
import type { CallOptions } from "../client/client.ts";
import { PROTOBUF_TYPE } from "../codec/codec.ts";
import type { CallContext, HandlerFn, HandlerOptions } from "../server/handler.ts";

/** The signature protoc-gen-es gives a unary rpc. */
type Unary<I extends DescMessage, O extends DescMessage> = { methodKind: "unary"; input: I; output: O };

type UnaryMethods<S extends DescService> = {
  [K in keyof S["method"] as S["method"][K] extends Unary<DescMessage, DescMessage> ? K : never]: S["method"][K];
};

/** The client of a service: one async method per unary rpc, rejecting with a MicroError. */
export type ServiceClient<S extends DescService> = {
  [K in keyof UnaryMethods<S>]: UnaryMethods<S>[K] extends Unary<infer I, infer O>
    ? (request: MessageInitShape<I>, opts?: CallOptions) => Promise<MessageShape<O>>
    : never;
};

/**
 * What a server implements: one method per unary rpc, taking the typed request. It may return the
 * response message or a plain object of its fields; throw a MicroError to answer with one.
 */
export type ServiceImpl<S extends DescService> = {
  [K in keyof UnaryMethods<S>]: UnaryMethods<S>[K] extends Unary<infer I, infer O>
    ? (request: MessageShape<I>, ctx: CallContext) => MessageInitShape<O> | Promise<MessageInitShape<O>>
    : never;
};

/** Anything that makes RPC calls: a Service or a Client. */
export interface Caller {
  call(service: string, endpoint: string, request: unknown, opts?: CallOptions): Promise<unknown>;
}

const unaryMethods = (service: DescService): DescMethod[] => service.methods.filter((m) => m.methodKind === "unary");

/** go-micro's endpoint name: the proto service and rpc names, "StudentManager.GetStudent". */
export const endpointName = (method: DescMethod): string => `${method.parent.name}.${method.name}`;

/**
 * A typed client for `service` (the registered service name, e.g. "student_service"). Bodies are
 * protobuf unless `defaults` or a call's options name another Content-Type, e.g. JSON_TYPE.
 */
export function createClient<S extends DescService>(descriptor: S, service: string, caller: Caller, defaults: CallOptions = {}): ServiceClient<S> {
  const client: Record<string, (request: MessageInitShape<DescMessage>, opts?: CallOptions) => Promise<unknown>> = {};
  for (const method of unaryMethods(descriptor)) {
    const schemas = { requestSchema: method.input, responseSchema: method.output };
    client[method.localName] = (request, opts) =>
      caller.call(service, endpointName(method), protobuf().create(method.input, request), { contentType: PROTOBUF_TYPE, ...defaults, ...opts, ...schemas });
  }
  return client as ServiceClient<S>;
}

export interface ProtoRoute {
  endpoint: string;
  handler: HandlerFn;
  options: HandlerOptions;
}

/** The server routes of an implementation; the server's handle(descriptor, impl) registers them. */
export function protoRoutes(descriptor: DescService, impl: object): ProtoRoute[] {
  return unaryMethods(descriptor).map((method) => {
    const fn = (impl as Record<string, unknown>)[method.localName];
    if (typeof fn !== "function") throw new TypeError(`${descriptor.name} implementation has no ${method.localName}() for rpc ${method.name}`);
    return {
      endpoint: endpointName(method),
      // create() turns a plain object into the message (and passes a message through).
      handler: async (request, ctx) => protobuf().create(method.output, (await fn.call(impl, request, ctx)) as MessageInitShape<DescMessage>),
      options: { requestSchema: method.input, responseSchema: method.output },
    };
  });
}
