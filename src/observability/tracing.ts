/**
 * OpenTelemetry tracing as go-micro's opentelemetry wrappers: a span per client call attempt,
 * server handler, publish and delivered event, named as go-micro names them, with W3C trace
 * context carried in the call's metadata and the event's headers, so one trace crosses services
 * and brokers. Only @opentelemetry/api is used: the SDK, its sampler, exporter and propagator
 * (W3C by default) are the program's choice. Until a tracer provider is registered (or given in
 * the options) the wrappers step aside, so a node without an SDK pays one check per call and does
 * not load the API at all.
 */
import type { Attributes, Span, TextMapGetter, TextMapSetter, Tracer, TracerProvider } from "@opentelemetry/api";
import { MicroError } from "../errors.ts";
import { getHeader, type Headers } from "../transport/transport.ts";
import type { CallWrapper, HandlerWrapper, PublishWrapper, SubscriberWrapper } from "../wrapper/wrapper.ts";
import { otelApi, otelRegistered } from "./otel-api.ts";

export const TRACER_NAME = "tsmicro";

/** Reads trace context from call metadata or event headers, whatever case a transport or broker gave the keys. */
const headerGetter: TextMapGetter<Headers> = {
  get: (headers, key) => getHeader(headers, key),
  keys: (headers) => Object.keys(headers),
};

const headerSetter: TextMapSetter<Headers> = {
  set: (headers, key, value) => {
    headers[key] = value;
  },
};

/** What the global tracer provider delegates to while no SDK is registered. */
let noSdk: TracerProvider | undefined;

/** Whether a tracer provider (an SDK) is registered globally: until one is, spans and propagation would all be no-ops. */
function sdkRegistered(): boolean {
  if (!otelRegistered("trace")) return false; // the API's own provider, delegating to its no-op one
  const { trace, ProxyTracerProvider } = otelApi();
  noSdk ??= new ProxyTracerProvider().getDelegate();
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegate() !== noSdk;
}

export interface TracingOptions {
  /** This node's service name. */
  service: string;
  /** This node's registry id. */
  nodeId: string;
  /** The broker's name ("nats", "http", …): messaging.system of event spans. */
  broker?: () => string;
  /** Default: the global tracer provider (what the SDK registers). */
  tracerProvider?: TracerProvider;
}

/** Ends span with the outcome: an error's go-micro code and message, or OK. */
function end(span: Span, err?: unknown): void {
  if (err !== undefined && span.isRecording()) {
    const e = err instanceof MicroError ? err : MicroError.from(err, TRACER_NAME);
    span.setAttribute("micro.error_code", e.code);
    span.recordException(e);
    span.setStatus({ code: otelApi().SpanStatusCode.ERROR, message: e.detail });
  }
  span.end();
}

/** Runs work as span's outcome: ends it when the promise settles, passing the result through. */
async function traced<T>(span: Span, work: () => Promise<T>): Promise<T> {
  try {
    const result = await work();
    end(span);
    return result;
  } catch (err) {
    end(span, err);
    throw err;
  }
}

export class NodeTracing {
  /** Made at the first traced call: until then the API may not be loaded. */
  private tracerOfNode?: Tracer;

  /** True with a tracer provider of the program's; else whether the SDK is registered, asked on each call (it may come later). */
  private readonly on: () => boolean;

  constructor(private readonly opts: TracingOptions) {
    this.on = opts.tracerProvider ? () => true : sdkRegistered;
  }

  private get tracer(): Tracer {
    return (this.tracerOfNode ??= (this.opts.tracerProvider ?? otelApi().trace).getTracer(TRACER_NAME));
  }

  /** A client span per attempt, its context injected into the attempt's metadata. */
  readonly wrapCall: CallWrapper = (next) => (call) => {
    if (!this.on()) return next(call);
    const { context, propagation, trace, SpanKind } = otelApi();
    const parent = context.active();
    const span = this.tracer.startSpan(`${call.service}.${call.endpoint}`, { kind: SpanKind.CLIENT }, parent);
    if (span.isRecording()) {
      span.setAttributes({
        "rpc.system": "go-micro",
        "rpc.service": call.service,
        "rpc.method": call.endpoint,
        "micro.service": call.service,
        "micro.endpoint": call.endpoint,
        "micro.node": call.node.id,
        "server.address": call.node.address,
        "micro.attempt": call.attempt,
      });
    }
    propagation.inject(trace.setSpan(parent, span), call.request.headers, headerSetter);
    return traced(span, () => next(call));
  };

  /** A server span per handled request, a child of the caller's span; the handler runs inside it. */
  readonly wrapHandler: HandlerWrapper = (next) => (request, ctx) => {
    if (!this.on()) return next(request, ctx);
    const { context, propagation, trace, SpanKind, ROOT_CONTEXT } = otelApi();
    const parent = propagation.extract(ROOT_CONTEXT, ctx.headers, headerGetter);
    const span = this.tracer.startSpan(`${this.opts.service}.${ctx.endpoint}`, { kind: SpanKind.SERVER }, parent);
    if (span.isRecording()) {
      span.setAttributes({
        "rpc.system": "go-micro",
        "rpc.service": this.opts.service,
        "rpc.method": ctx.endpoint,
        "micro.service": this.opts.service,
        "micro.endpoint": ctx.endpoint,
        "micro.node": this.opts.nodeId,
      });
    }
    return context.with(trace.setSpan(parent, span), () => traced(span, () => next(request, ctx)));
  };

  /** A producer span per publish, its context injected into the event's headers. */
  readonly wrapPublish: PublishWrapper = (next) => (publication) => {
    if (!this.on()) return next(publication);
    const { context, propagation, trace, SpanKind } = otelApi();
    const parent = context.active();
    const span = this.tracer.startSpan(`Pub to ${publication.topic}`, { kind: SpanKind.PRODUCER }, parent);
    if (span.isRecording()) span.setAttributes(this.eventAttributes(publication.topic, "publish"));
    propagation.inject(trace.setSpan(parent, span), publication.message.header, headerSetter);
    return traced(span, () => next(publication));
  };

  /** A consumer span per delivered event, a child of the publisher's span; the handler runs inside it. */
  readonly wrapSubscriber: SubscriberWrapper = (next) => (event) => {
    if (!this.on()) return next(event);
    const { context, propagation, trace, SpanKind, ROOT_CONTEXT } = otelApi();
    const parent = propagation.extract(ROOT_CONTEXT, event.message.header, headerGetter);
    const span = this.tracer.startSpan(`Sub from ${event.topic}`, { kind: SpanKind.CONSUMER }, parent);
    if (span.isRecording()) span.setAttributes(this.eventAttributes(event.topic, "process"));
    return context.with(trace.setSpan(parent, span), () => traced(span, () => next(event)));
  };

  private eventAttributes(topic: string, operation: string): Attributes {
    const attributes: Attributes = {
      "messaging.destination.name": topic,
      "messaging.operation.type": operation,
      "micro.topic": topic,
      "micro.service": this.opts.service,
      "micro.node": this.opts.nodeId,
    };
    const broker = this.opts.broker?.();
    if (broker) attributes["messaging.system"] = broker;
    return attributes;
  }
}
