import { http } from "./builtins.ts";

/** The go-micro error: the only error shape that crosses a process boundary. */
export interface MicroErrorJSON {
  id: string;
  code: number;
  detail: string;
  status: string;
}

export class MicroError extends Error implements MicroErrorJSON {
  readonly id: string;
  readonly code: number;
  readonly detail: string;
  readonly status: string;
  /** Set by the client for failures of the connection rather than of the handler: safe to retry elsewhere. */
  retryable = false;

  constructor(id: string, code: number, detail: string, status?: string) {
    super(detail);
    this.name = "MicroError";
    this.id = id;
    this.code = code;
    this.detail = detail;
    this.status = status ?? http.STATUS_CODES[code] ?? "";
  }

  toJSON(): MicroErrorJSON {
    return { id: this.id, code: this.code, detail: this.detail, status: this.status };
  }

  /** go-micro's Error() string: the JSON itself. */
  override toString(): string {
    return JSON.stringify(this.toJSON());
  }

  /** Parses an error body from the wire; anything that is not error JSON becomes a 500 carrying the text. */
  static parse(text: string, fallbackId = "go.micro.client"): MicroError {
    try {
      const o = JSON.parse(text) as Partial<MicroErrorJSON>;
      if (o && typeof o === "object" && typeof o.code === "number") {
        return new MicroError(String(o.id ?? ""), o.code, String(o.detail ?? ""), o.status);
      }
    } catch {
      /* not JSON: fall through */
    }
    return internalServerError(fallbackId, text);
  }

  /** Any thrown value as a MicroError; a plain Error keeps only its message (never its stack). */
  static from(err: unknown, id: string): MicroError {
    if (err instanceof MicroError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return internalServerError(id, message);
  }
}

const make = (code: number) => (id: string, detail: string) => new MicroError(id, code, detail);

export const badRequest = make(400);
export const unauthorized = make(401);
export const forbidden = make(403);
export const notFound = make(404);
export const methodNotAllowed = make(405);
export const timeout = make(408);
export const conflict = make(409);
export const requestEntityTooLarge = make(413);
export const unsupportedMediaType = make(415);
export const tooManyRequests = make(429);
export const internalServerError = make(500);
export const serviceUnavailable = make(503);

/**
 * A service could not start: its plugin could not be created (unknown name, client library not
 * installed), its port was taken, or its registry or broker did not answer. One line saying which,
 * with the underlying error as `cause`; what start() had already started is stopped again.
 */
export class StartupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StartupError";
  }
}
