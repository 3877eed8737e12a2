/** One structured logger for the framework (pino, to stderr so stdout stays the program's own). */
import { pino, destination } from "pino";

export const logger = pino({ name: "tsmicro", level: process.env.MICRO_LOG_LEVEL ?? "info" }, destination({ fd: 2, sync: true }));
