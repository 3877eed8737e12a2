/**
 * One structured logger for the framework (pino, to stderr so stdout stays the program's own).
 * pino itself is loaded with the first line written at an enabled level: importing it costs a
 * process about 9 MB of RSS (its transport machinery, thread-stream, comes along), which a service
 * that logs nothing at its level (MICRO_LOG_LEVEL=warn, say) need not pay.
 */
import { createRequire } from "node:module";
import type { Logger } from "pino";

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

type LogFn = (objOrMsg: unknown, msg?: string) => void;

class LazyLogger {
  private pino?: Logger;
  private threshold: number;

  constructor(private levelName: string) {
    this.threshold = LEVELS[levelName] ?? LEVELS.info!;
  }

  get level(): string {
    return this.levelName;
  }

  set level(name: string) {
    this.levelName = name;
    this.threshold = LEVELS[name] ?? LEVELS.info!;
    if (this.pino) this.pino.level = name;
  }

  private write(level: "debug" | "info" | "warn" | "error", args: [unknown, string?]): void {
    if (LEVELS[level]! < this.threshold) return;
    if (!this.pino) {
      const { pino, destination } = createRequire(import.meta.url)("pino") as typeof import("pino");
      this.pino = pino({ name: "tsmicro", level: this.levelName }, destination({ fd: 2, sync: true }));
    }
    (this.pino[level] as (...a: unknown[]) => void)(...args);
  }

  readonly debug: LogFn = (...args) => this.write("debug", args as [unknown, string?]);
  readonly info: LogFn = (...args) => this.write("info", args as [unknown, string?]);
  readonly warn: LogFn = (...args) => this.write("warn", args as [unknown, string?]);
  readonly error: LogFn = (...args) => this.write("error", args as [unknown, string?]);
}

export const logger = new LazyLogger(process.env.MICRO_LOG_LEVEL ?? "info");
