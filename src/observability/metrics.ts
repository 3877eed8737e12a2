/**
 * Prometheus metrics of one node, as go-micro's prometheus wrappers: server handlers, client call
 * attempts, publishes and deliveries per endpoint or topic, plus registry and broker state and
 * prom-client's process metrics. The names are the contract the dashboard reads (CONTRACT.md).
 *
 * prom-client rather than the OTel metrics API: the exposition format is the product here (one
 * GET /metrics on the node's port, scraped as is), prom-client writes it directly with no SDK,
 * meter provider or exporter to configure, and it is what Node services that already run
 * Prometheus have, so their own Registry can be passed in.
 *
 * The call path is kept cheap: each endpoint's or topic's series are found with one map lookup and
 * updated as plain numbers (families.ts); prom-client renders them when /metrics is scraped.
 */
import type { Registry } from "prom-client";
import { MicroError } from "../errors.ts";
import type { CallWrapper, HandlerWrapper, PublishWrapper, SubscriberWrapper } from "../wrapper/wrapper.ts";
import { Family, type CounterSeries, type GaugeSeries, type HistogramSeries } from "./families.ts";

/** The code label of a success; failures carry their go-micro error code. */
const OK = "200";

/** The go-micro error code of a failure, as a label value ("500" for anything that is not a MicroError). */
export const errorCode = (err: unknown): string => String(err instanceof MicroError ? err.code : 500);

export interface NodeIdentity {
  /** This node's service name. */
  service: string;
  /** This node's registry id. */
  nodeId: string;
}

/** A request's series for one service and endpoint, looked up once per call by endpoint. */
class EndpointSeries {
  private readonly codes = new Map<string, CounterSeries>();
  readonly inFlight?: GaugeSeries;
  private readonly duration: HistogramSeries;

  constructor(
    private readonly requests: Family<"counter">,
    duration: Family<"histogram">,
    inFlight: Family<"gauge"> | undefined,
    private readonly service: string,
    private readonly endpoint: string,
  ) {
    this.duration = duration.labels({ service, endpoint });
    this.inFlight = inFlight?.labels({ service, endpoint });
  }

  /**
   * Runs one request, counting it in flight until it ends and then by how it ended. Then-callbacks,
   * not an async function with await and finally: this wraps every call and every handled request.
   */
  measure<T>(run: () => Promise<T>): Promise<T> {
    this.inFlight?.inc();
    const started = performance.now();
    let outcome: Promise<T>;
    try {
      outcome = run();
    } catch (err) {
      outcome = Promise.reject(err);
    }
    return outcome.then(
      (value) => (this.done(started, OK), value),
      (err: unknown) => {
        this.done(started, errorCode(err));
        throw err;
      },
    );
  }

  /** Counts one request ending with code after started (performance.now()). */
  private done(started: number, code: string): void {
    this.inFlight?.dec();
    this.duration.observe((performance.now() - started) / 1000);
    let counter = this.codes.get(code);
    if (!counter) this.codes.set(code, (counter = this.requests.labels({ service: this.service, endpoint: this.endpoint, code })));
    counter.inc();
  }
}

/** A topic's series, made once. */
interface TopicSeries {
  published: CounterSeries;
  publishErrors: CounterSeries;
  delivered: CounterSeries;
  deliveryErrors: CounterSeries;
  handlerDuration: HistogramSeries;
}

/** Seconds: RPC answers from sub-millisecond to the default 5 s timeout and beyond. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class NodeMetrics {
  /** The program's registry, or the node's own once the first scrape has made it. */
  private registry?: Registry;
  /** The node's families until its own registry is made (none with the program's registry). */
  private readonly unregistered: Array<Family<"counter" | "gauge" | "histogram">> = [];
  /** The node's own registry, once (concurrent first scrapes share it). */
  private ownRegistryMade?: Promise<Registry>;
  private readonly serverRequests: Family<"counter">;
  private readonly serverDuration: Family<"histogram">;
  private readonly serverInFlight: Family<"gauge">;
  private readonly clientRequests: Family<"counter">;
  private readonly clientDuration: Family<"histogram">;
  private readonly published: Family<"counter">;
  private readonly publishErrors: Family<"counter">;
  private readonly delivered: Family<"counter">;
  private readonly deliveryErrors: Family<"counter">;
  private readonly handlerDuration: Family<"histogram">;
  private readonly registrations: CounterSeries;
  private readonly registrationErrors: CounterSeries;
  private readonly registryUp: GaugeSeries;
  private readonly brokerUp: GaugeSeries;
  private readonly server = new Map<string, EndpointSeries>();
  private readonly client = new Map<string, Map<string, EndpointSeries>>();
  private readonly topics = new Map<string, TopicSeries>();

  /**
   * With no registry, the node gets its own at the first scrape (prom-client is loaded then: a node
   * nobody scrapes does not carry it), whose series all carry node_service and node_id, with
   * prom-client's process metrics. A registry passed in gets the metrics at once, keeps its own
   * default labels and process metrics, and may be shared: the metrics are made in it once and
   * then found there.
   */
  constructor(
    private readonly node: NodeIdentity,
    registry?: Registry,
  ) {
    this.registry = registry;
    const family = <K extends "counter" | "gauge" | "histogram">(type: K, name: string, help: string, bounds?: readonly number[]): Family<K> => {
      if (registry) return Family.in(registry, type, name, help, bounds);
      const own = new Family(type, name, help, bounds);
      this.unregistered.push(own);
      return own;
    };
    this.serverRequests = family("counter", "micro_server_requests_total", "Requests handled, by endpoint and code (200, or the go-micro error code)");
    this.serverDuration = family("histogram", "micro_server_request_duration_seconds", "Time the handler took, in seconds", LATENCY_BUCKETS);
    this.serverInFlight = family("gauge", "micro_server_requests_in_flight", "Requests being handled now");
    this.clientRequests = family("counter", "micro_client_requests_total", "Call attempts made, by called service, endpoint and code");
    this.clientDuration = family("histogram", "micro_client_request_duration_seconds", "Time a call attempt took, in seconds", LATENCY_BUCKETS);
    this.published = family("counter", "micro_broker_published_total", "Events published, by topic");
    this.publishErrors = family("counter", "micro_broker_publish_errors_total", "Publishes that failed, by topic");
    this.delivered = family("counter", "micro_broker_delivered_total", "Events delivered to a handler, by topic");
    this.deliveryErrors = family("counter", "micro_broker_delivery_errors_total", "Deliveries whose handler failed, by topic");
    this.handlerDuration = family("histogram", "micro_broker_handler_duration_seconds", "Time an event handler took, in seconds", LATENCY_BUCKETS);
    this.registrations = family("counter", "micro_registry_registrations_total", "Registrations and re-registrations of this node").labels();
    this.registrationErrors = family("counter", "micro_registry_registration_errors_total", "Registrations that failed").labels();
    this.registryUp = family("gauge", "micro_registry_up", "1 while the last registration succeeded, else 0").labels();
    this.brokerUp = family("gauge", "micro_broker_up", "1 from the broker's connect() until its disconnect(), else 0").labels();
  }

  private serverSeries(endpoint: string): EndpointSeries {
    let series = this.server.get(endpoint);
    if (!series) this.server.set(endpoint, (series = new EndpointSeries(this.serverRequests, this.serverDuration, this.serverInFlight, this.node.service, endpoint)));
    return series;
  }

  private clientSeries(service: string, endpoint: string): EndpointSeries {
    let byEndpoint = this.client.get(service);
    if (!byEndpoint) this.client.set(service, (byEndpoint = new Map()));
    let series = byEndpoint.get(endpoint);
    if (!series) byEndpoint.set(endpoint, (series = new EndpointSeries(this.clientRequests, this.clientDuration, undefined, service, endpoint)));
    return series;
  }

  private topicSeries(topic: string): TopicSeries {
    let series = this.topics.get(topic);
    if (!series) {
      series = {
        published: this.published.labels({ topic }),
        publishErrors: this.publishErrors.labels({ topic }),
        delivered: this.delivered.labels({ topic }),
        deliveryErrors: this.deliveryErrors.labels({ topic }),
        handlerDuration: this.handlerDuration.labels({ topic }),
      };
      this.topics.set(topic, series);
    }
    return series;
  }

  readonly wrapHandler: HandlerWrapper = (next) => (request, ctx) => this.serverSeries(ctx.endpoint).measure(() => next(request, ctx));

  readonly wrapCall: CallWrapper = (next) => (call) => this.clientSeries(call.service, call.endpoint).measure(() => next(call));

  readonly wrapPublish: PublishWrapper = (next) => async (publication) => {
    const series = this.topicSeries(publication.topic);
    try {
      await next(publication);
    } catch (err) {
      series.publishErrors.inc();
      throw err;
    }
    series.published.inc();
  };

  readonly wrapSubscriber: SubscriberWrapper = (next) => async (event) => {
    const series = this.topicSeries(event.topic);
    series.delivered.inc();
    const started = performance.now();
    try {
      await next(event);
    } catch (err) {
      series.deliveryErrors.inc();
      throw err;
    } finally {
      series.handlerDuration.observe((performance.now() - started) / 1000);
    }
  };

  /** Counts one registration (or renewal) of this node and whether the registry took it. */
  registered(ok: boolean): void {
    if (ok) this.registrations.inc();
    else this.registrationErrors.inc();
    this.registryUp.set(ok ? 1 : 0);
  }

  brokerConnected(up: boolean): void {
    this.brokerUp.set(up ? 1 : 0);
  }

  /** The Prometheus text exposition of the registry. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    const registry = this.registry ?? (await (this.ownRegistryMade ??= this.ownRegistry()));
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  private async ownRegistry(): Promise<Registry> {
    const { Registry, collectDefaultMetrics } = await import("prom-client");
    const registry = new Registry();
    registry.setDefaultLabels({ node_service: this.node.service, node_id: this.node.nodeId });
    collectDefaultMetrics({ register: registry });
    for (const family of this.unregistered.splice(0)) family.registerIn(registry);
    return registry;
  }
}
