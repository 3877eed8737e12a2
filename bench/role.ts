/** What a benchmark worker process runs: one role (server, client, publisher, …) of one system. */
import type { Recorder, WindowStats } from "./recorder.ts";

export interface RoleContext {
  /** Unique per scenario run: NATS subjects and Moleculer namespaces never meet another run's. */
  namespace: string;
  /** The info the peer process's role returned (its address, registry record, …). */
  peer: unknown;
  /** What the scenario varies (payload size, nodes, subscribers); empty for the standard rows. */
  params: ScenarioParams;
  /** Loopback ports the harness reserved, for systems that must know every node's port up front (Moleculer TCP). */
  ports: number[];
}

export interface ScenarioParams {
  /** Bytes of the echo request's name (the response carries them back); default the 5 of "davie". */
  payload?: number;
  /** Nodes of the service in the client's registry (all at the one server's address). */
  nodes?: number;
  /** Subscriptions to the topic in the subscriber process. */
  subscribers?: number;
}

export interface Role {
  /** What the peer process needs to reach this one. */
  info?: unknown;
  /** One operation of the load (an RPC call, a publish); clients only. */
  op?: () => unknown;
  /** Set by roles that measure what they receive (subscribers) instead of the ops they issue. */
  recorder?: Recorder;
  /** Set by roles run by a program of their own (go-micro's): it generates the load and measures itself. */
  external?: ExternalRole;
}

export interface ExternalRole {
  load(concurrency: number): void;
  mark(): Promise<{ cpuMicros: number; rss: number; stats: WindowStats }>;
}

export type RoleStart = (ctx: RoleContext) => Promise<Role>;

/** The roles one system file offers, by name. */
export type Roles = Record<string, RoleStart>;

export type ToWorker =
  | { cmd: "start"; system: string; role: string; ctx: RoleContext }
  | { cmd: "load"; concurrency: number }
  | { cmd: "mark" }
  | { cmd: "exit" };

export type FromWorker =
  | { type: "ready"; info: unknown }
  | { type: "mark"; cpuMicros: number; rss: number; stats: WindowStats; youngGeneration?: number }
  | { type: "error"; message: string };
