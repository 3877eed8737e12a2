/**
 * A registry plugin written outside tsmicro: one JSON file per node in a directory (the URI's path),
 * read on every lookup, and polled for watches. Enough to share services between processes on one
 * machine; it shows the Registry contract a plugin implements.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  ServiceNotFoundError,
  type RegisterOptions,
  type Registry,
  type RegistryOptions,
  type ServiceRecord,
  type WatchEvent,
  type WatchOptions,
  type Watcher,
} from "../../../src/index.ts";

/** Its own options, typed: the directory comes from the URI (dir:///tmp/x) or `dir`. */
export interface DirRegistryOptions extends RegistryOptions {
  dir?: string;
  /** Milliseconds between directory scans of a watch. Default 100. */
  pollInterval?: number;
}

interface Entry {
  service: ServiceRecord;
  expiresAt: number;
}

const fileName = (service: string, node: string) => `${encodeURIComponent(service)}~${encodeURIComponent(node)}.json`;

export default class DirRegistry implements Registry {
  private opts: DirRegistryOptions;
  private readonly watchers = new Set<() => void>();

  constructor(opts: DirRegistryOptions = {}) {
    this.opts = opts;
  }

  private get dir(): string {
    const dir = this.opts.dir ?? (this.opts.url ? new URL(this.opts.url).pathname : undefined);
    if (!dir) throw new Error("dir registry: give a directory (dir:///path)");
    return dir;
  }

  init(opts: DirRegistryOptions): void {
    this.opts = { ...this.opts, ...opts };
  }

  options(): DirRegistryOptions {
    return this.opts;
  }

  async register(service: ServiceRecord, opts: RegisterOptions = {}): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    for (const node of service.nodes) {
      const entry: Entry = { service: { ...service, nodes: [node] }, expiresAt: opts.ttl ? Date.now() + opts.ttl * 1000 : Number.MAX_SAFE_INTEGER };
      const file = path.join(this.dir, fileName(service.name, node.id));
      await writeFile(`${file}.tmp`, JSON.stringify(entry));
      await rename(`${file}.tmp`, file); // readers never see half a file
    }
  }

  async deregister(service: ServiceRecord): Promise<void> {
    for (const node of service.nodes) await rm(path.join(this.dir, fileName(service.name, node.id)), { force: true });
  }

  /** Every live node entry, by file name. */
  private async entries(): Promise<Map<string, ServiceRecord>> {
    const out = new Map<string, ServiceRecord>();
    const files = await readdir(this.dir).catch(() => [] as string[]);
    for (const file of files.filter((f) => f.endsWith(".json"))) {
      const text = await readFile(path.join(this.dir, file), "utf8").catch(() => "");
      if (!text) continue;
      try {
        const entry = JSON.parse(text) as Entry;
        if (entry.expiresAt > Date.now()) out.set(file, entry.service);
      } catch {
        // not an entry of ours
      }
    }
    return out;
  }

  async getService(name: string): Promise<ServiceRecord[]> {
    const byVersion = new Map<string, ServiceRecord>();
    for (const s of (await this.entries()).values()) {
      if (s.name !== name) continue;
      const existing = byVersion.get(s.version);
      if (existing) existing.nodes.push(...s.nodes);
      else byVersion.set(s.version, { ...s, nodes: [...s.nodes] });
    }
    if (byVersion.size === 0) throw new ServiceNotFoundError(name);
    return [...byVersion.values()];
  }

  async listServices(): Promise<ServiceRecord[]> {
    const seen = new Map<string, ServiceRecord>();
    for (const s of (await this.entries()).values()) seen.set(`${s.name}\0${s.version}`, { ...s, nodes: [] });
    return [...seen.values()];
  }

  /** Scans the directory every pollInterval and reports nodes that came, changed or went. */
  watch(opts: WatchOptions = {}): Watcher {
    const queue: WatchEvent[] = [];
    const waiting: Array<(e: IteratorResult<WatchEvent>) => void> = [];
    let stopped = false;
    let known: Map<string, ServiceRecord> | undefined;
    const emit = (action: WatchEvent["action"], service: ServiceRecord) => {
      if (opts.service && service.name !== opts.service) return;
      const waiter = waiting.shift();
      if (waiter) waiter({ value: { action, service }, done: false });
      else queue.push({ action, service });
    };
    const scan = async () => {
      const now = await this.entries();
      if (known) {
        for (const [file, s] of now) if (!known.has(file)) emit("create", s);
        else if (JSON.stringify(known.get(file)) !== JSON.stringify(s)) emit("update", s);
        for (const [file, s] of known) if (!now.has(file)) emit("delete", s);
      }
      known = now;
    };
    const timer = setInterval(() => void scan(), this.opts.pollInterval ?? 100);
    void scan();
    const stop = () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      this.watchers.delete(stop);
      for (const w of waiting.splice(0)) w({ value: undefined, done: true });
    };
    this.watchers.add(stop);
    const next = (): Promise<IteratorResult<WatchEvent>> => {
      if (queue.length > 0) return Promise.resolve({ value: queue.shift()!, done: false });
      if (stopped) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve) => waiting.push(resolve));
    };
    return {
      next: async () => {
        const result = await next();
        if (result.done) throw new Error("watcher stopped");
        return result.value;
      },
      stop,
      [Symbol.asyncIterator]: () => ({ next }),
    };
  }

  async close(): Promise<void> {
    for (const stop of [...this.watchers]) stop();
  }

  toString(): string {
    return "dir";
  }
}
